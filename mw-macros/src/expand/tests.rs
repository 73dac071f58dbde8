use proc_macro2::TokenStream;
use quote::quote;

use super::*;
use crate::parse::parse;

fn expand_str(attr: TokenStream, item: TokenStream, krate: TokenStream) -> String {
    let svc = parse(attr, item).ok().expect("parses");
    let krate: Path = syn::parse2(krate).unwrap();
    let out = expand(&svc, &krate);
    // The output is a valid sequence of items.
    syn::parse2::<syn::File>(out.clone()).expect("expansion parses as items");
    out.to_string()
}

fn sample() -> TokenStream {
    quote! {
        pub trait Increment {
            async fn inc(&self, n: u64) -> u64;
            async fn div(&self, a: i64, b: i64) -> Result<i64, MathError>;
            #[oneway(receipt)] async fn note(&self, line: String);
            async fn ticks(&self, count: u32) -> Streaming<u64>;
            #[method(id = 9)] async fn other(&self) -> String;
        }
    }
}

#[test]
fn trait_is_rewritten_with_send_futures() {
    let s = expand_str(quote!(name = "inc"), sample(), quote!(::mw_rpc));
    assert!(
        s.contains(
            "pub trait Increment : :: core :: marker :: Send + :: core :: marker :: Sync + 'static"
        ),
        "{s}"
    );
    assert!(s.contains(
        "fn inc (& self , n : u64) -> impl :: core :: future :: Future < Output = u64 > + :: core :: marker :: Send ;"
    ), "{s}");
    let tr = s.split("# [doc").next().unwrap();
    assert!(!tr.contains("async"), "{tr}");
}

#[test]
fn client_calls() {
    let s = expand_str(
        quote!(name = "inc", version = 2),
        sample(),
        quote!(::mw_rpc),
    );
    assert!(s.contains("pub const SERVICE : :: mw_rpc :: ServiceId = :: mw_rpc :: ServiceId :: new (\"inc\" , 2) ;"), "{s}");
    assert!(
        s.contains("self . channel . call :: < _ , u64 > (Self :: SERVICE , 1 , & (n ,)) . await"),
        "{s}"
    );
    assert!(
        s.contains(
            "self . channel . start_call :: < _ , u64 > (Self :: SERVICE , 1 , & (n ,)) . await"
        ),
        "{s}"
    );
    assert!(s.contains("self . channel . call_fallible :: < _ , i64 , MathError > (Self :: SERVICE , 2 , & (a , b ,)) . await"), "{s}");
    assert!(s.contains(":: core :: result :: Result < :: mw_rpc :: ReplyHandle < i64 , MathError > , :: mw_rpc :: RpcError < MathError >>"), "{s}");
    assert!(s.contains("self . channel . oneway (Self :: SERVICE , 3 , & (line ,) , :: mw_rpc :: Ack :: Receipt) . await"), "{s}");
    assert!(s.contains("self . channel . call_stream :: < _ , u64 > (Self :: SERVICE , 4 , & (count ,)) . await"), "{s}");
    assert!(
        s.contains("self . channel . call :: < _ , String > (Self :: SERVICE , 9 , & ()) . await"),
        "{s}"
    );
    assert!(!s.contains("start_note"), "no deferred variant for oneway");
    assert!(
        !s.contains("start_ticks"),
        "no deferred variant for streams"
    );
}

#[test]
fn server_dispatch() {
    let s = expand_str(quote!(), sample(), quote!(::mw::rpc));
    assert!(s.contains("impl < __MwImpl : Increment > :: mw :: rpc :: Service for IncrementServer < __MwImpl >"), "{s}");
    assert!(s.contains(":: mw :: rpc :: MethodInfo { id : 3 , name : \"note\" , kind : :: mw :: rpc :: MethodKind :: Oneway (:: mw :: rpc :: Ack :: Receipt) }"), "{s}");
    assert!(
        s.contains("kind : :: mw :: rpc :: MethodKind :: Stream"),
        "{s}"
    );
    assert!(
        s.contains(
            "let (a , b ,) : (i64 , i64 ,) = :: mw :: rpc :: __private :: decode (& args) ? ;"
        ),
        "{s}"
    );
    assert!(s.contains(":: mw :: rpc :: __private :: stream (async move { < __MwImpl as Increment > :: ticks (& * inner , count) . await })"), "{s}");
    assert!(
        s.contains(":: mw :: rpc :: ServiceId :: new (\"Increment\" , 1)"),
        "default name: {s}"
    );
}

#[test]
fn enums_use_the_runtime_serde() {
    let s = expand_str(quote!(), sample(), quote!(::mw::rpc));
    assert!(
        s.contains("# [serde (crate = \"::mw::rpc::__private::serde\")]"),
        "{s}"
    );
    assert!(
        s.contains(":: mw :: rpc :: __private :: serde :: Serialize"),
        "{s}"
    );
    assert!(s.contains("pub enum IncrementRequest"), "{s}");
    assert!(
        s.contains(
            "Div { # [doc = \"Argument `a`.\"] a : i64 , # [doc = \"Argument `b`.\"] b : i64 }"
        ),
        "{s}"
    );
    assert!(s.contains("Other { }"), "{s}");
    assert!(s.contains("Div (Result < i64 , MathError >)"), "{s}");
    assert!(s.contains("Note (())"), "{s}");
    assert!(s.contains("Ticks (u64)"), "{s}");
}

#[test]
fn visibility_follows_the_trait() {
    let s = expand_str(
        quote!(),
        quote!(
            pub(crate) trait T {
                async fn a(&self);
            }
        ),
        quote!(::mw_rpc),
    );
    for item in [
        "trait T",
        "enum TRequest",
        "enum TResponse",
        "struct TClient",
        "struct TServer",
    ] {
        assert!(s.contains(&format!("pub (crate) {item}")), "{item}: {s}");
    }
    let s = expand_str(
        quote!(),
        quote!(
            trait T {
                async fn a(&self);
            }
        ),
        quote!(::mw_rpc),
    );
    assert!(
        s.contains("} trait T :") || s.starts_with("trait T :"),
        "{s}"
    );
    assert!(!s.contains("pub struct TClient"), "{s}");
}

#[test]
fn every_path_is_absolute() {
    // Spot check: no bare `Result`, `Ok`, `Arc`, `Send` from the prelude in generated code
    // (the user's own `Result<..>` in the sample is the only relative path).
    let s = expand_str(
        quote!(),
        quote!(
            trait T {
                async fn a(&self, x: u8) -> u8;
                #[oneway]
                async fn b(&self);
            }
        ),
        quote!(::mw_rpc),
    );
    for bare in [
        " Result ", " Ok ", " Err ", " Arc ", " Send ", " Sync ", " Box ", " Clone ", " Debug ",
    ] {
        for (i, _) in s.match_indices(bare) {
            let before = &s[..i];
            assert!(before.ends_with("::"), "relative `{bare}` at {i}: {s}");
        }
    }
}
