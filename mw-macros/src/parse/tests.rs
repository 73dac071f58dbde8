use proc_macro2::TokenStream;
use quote::{quote, ToTokens};

use super::*;

fn ok(attr: TokenStream, item: TokenStream) -> Service {
    match parse(attr, item) {
        Ok(s) => s,
        Err(f) => panic!("unexpected errors: {:?}", messages(&f.errors)),
    }
}

fn messages(e: &syn::Error) -> Vec<String> {
    e.clone().into_iter().map(|e| e.to_string()).collect()
}

/// The error messages, each with the source text of the tokens it points at.
fn errs(attr: TokenStream, item: TokenStream) -> Vec<String> {
    match parse(attr, item) {
        Ok(_) => panic!("expected errors"),
        Err(f) => messages(&f.errors),
    }
}

/// Exactly one error, containing `needle`.
fn one_err(attr: TokenStream, item: TokenStream, needle: &str) {
    let e = errs(attr, item);
    assert_eq!(e.len(), 1, "expected one error, got {e:?}");
    assert!(
        e[0].contains(needle),
        "{:?} does not contain {needle:?}",
        e[0]
    );
}

fn ty(s: &Type) -> String {
    s.to_token_stream().to_string()
}

fn full_trait() -> TokenStream {
    quote! {
        /// Docs.
        pub trait Increment {
            async fn inc(&self, n: u64) -> u64;
            async fn div(&self, a: i64, b: i64) -> Result<i64, MathError>;
            #[oneway] async fn log(&self, line: String);
            #[oneway(receipt)] async fn note(&self, line: String);
            #[oneway(delivery)] async fn poke(&self);
            async fn ticks(&self, count: u32) -> Streaming<u64>;
            #[method(id = 7)] async fn other(&self) -> String;
        }
    }
}

#[test]
fn defaults() {
    let s = ok(quote!(), full_trait());
    assert_eq!(s.name, "Increment");
    assert_eq!(s.version, 1);
    assert!(s.krate.is_none());
    assert_eq!(s.ident, "Increment");
    assert!(matches!(s.vis, syn::Visibility::Public(_)));
    assert_eq!(s.attrs.len(), 1, "doc comment kept");
}

#[test]
fn service_args() {
    let s = ok(
        quote!(name = "inc", version = 3, crate = "::mw::rpc"),
        full_trait(),
    );
    assert_eq!(s.name, "inc");
    assert_eq!(s.version, 3);
    assert_eq!(
        s.krate.unwrap().to_token_stream().to_string(),
        ":: mw :: rpc"
    );
    let s = ok(quote!(version = 2,), full_trait());
    assert_eq!((s.name.as_str(), s.version), ("Increment", 2));
}

#[test]
fn method_kinds() {
    let s = ok(quote!(), full_trait());
    let kinds: Vec<_> = s.methods.iter().map(|m| (m.name(), m.id)).collect();
    assert_eq!(
        kinds,
        [
            ("inc", 1),
            ("div", 2),
            ("log", 3),
            ("note", 4),
            ("poke", 5),
            ("ticks", 6),
            ("other", 7)
        ]
        .map(|(n, i)| (n.to_string(), i))
    );
    let m = &s.methods;
    assert!(matches!(m[0].kind, MethodKind::Unary));
    match &m[1].kind {
        MethodKind::Fallible { ok, err } => {
            assert_eq!(ty(ok), "i64");
            assert_eq!(ty(err), "MathError");
        }
        k => panic!("{k:?}"),
    }
    assert!(matches!(m[2].kind, MethodKind::Oneway(Ack::None)));
    assert!(matches!(m[3].kind, MethodKind::Oneway(Ack::Receipt)));
    assert!(matches!(m[4].kind, MethodKind::Oneway(Ack::Delivery)));
    match &m[5].kind {
        MethodKind::Stream { item } => assert_eq!(ty(item), "u64"),
        k => panic!("{k:?}"),
    }
    assert!(matches!(m[6].kind, MethodKind::Unary));
    assert_eq!(ty(&m[2].output), "()");
    assert_eq!(
        m[1].args
            .iter()
            .map(|a| a.ident.to_string())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    // Helper attributes are removed, others kept.
    assert!(m.iter().all(|m| m.attrs.is_empty()));
}

#[test]
fn numbering_is_positional() {
    let s = ok(
        quote!(),
        quote! {
            trait T {
                async fn a(&self);
                #[method(id = 100)] async fn b(&self);
                async fn c(&self);
                #[method(id = 0)] async fn d(&self);
            }
        },
    );
    let ids: Vec<u32> = s.methods.iter().map(|m| m.id).collect();
    assert_eq!(ids, [1, 100, 3, 0]);
}

#[test]
fn fallible_and_stream_detection() {
    let s = ok(
        quote!(),
        quote! {
            trait T {
                async fn a(&self) -> ::core::result::Result<u8, E>;
                async fn b(&self) -> io::Result<u8>;              // one argument: plain unary
                async fn c(&self) -> Result<u8, E, F>;             // three: plain unary
                async fn d(&self) -> mw_rpc::Streaming<Result<u8, E>>;
                async fn e(&self) -> Option<Result<u8, E>>;        // only the last segment counts
                async fn f(&self) -> ();
            }
        },
    );
    let m = &s.methods;
    assert!(matches!(&m[0].kind, MethodKind::Fallible { ok, .. } if ty(ok) == "u8"));
    assert!(matches!(m[1].kind, MethodKind::Unary));
    assert!(matches!(m[2].kind, MethodKind::Unary));
    assert!(matches!(&m[3].kind, MethodKind::Stream { item } if ty(item) == "Result < u8 , E >"));
    assert!(matches!(m[4].kind, MethodKind::Unary));
    assert!(matches!(m[5].kind, MethodKind::Unary));
}

#[test]
fn static_lifetime_and_user_attrs_allowed() {
    let s = ok(
        quote!(),
        quote! {
            pub(crate) trait T: Clone {
                /// Method docs.
                #[allow(unused)]
                async fn a(&self, c: Cow<'static, str>) -> Box<dyn Error + Send + 'static>;
            }
        },
    );
    assert_eq!(s.methods[0].attrs.len(), 2);
    assert_eq!(s.supertraits.len(), 1);
    assert!(matches!(s.vis, syn::Visibility::Restricted(_)));
}

#[test]
fn camel_case_variants() {
    use crate::model::camel_case;
    assert_eq!(camel_case("inc"), "Inc");
    assert_eq!(camel_case("get_user_by_id"), "GetUserById");
    assert_eq!(camel_case("v2_get"), "V2Get");
    assert_eq!(camel_case("_private"), "Private");
    let s = ok(
        quote!(),
        quote!(
            trait T {
                async fn r#type(&self);
            }
        ),
    );
    assert_eq!(s.methods[0].name(), "type");
    assert_eq!(s.methods[0].variant_name(), "Type");
}

// --- errors -----------------------------------------------------------------

#[test]
fn err_not_async() {
    one_err(
        quote!(),
        quote!(
            trait T {
                fn a(&self);
            }
        ),
        "must be `async fn`",
    );
}

#[test]
fn err_receivers() {
    one_err(
        quote!(),
        quote!(
            trait T {
                async fn a(&mut self);
            }
        ),
        "not `&mut self`",
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                async fn a(self);
            }
        ),
        "not `self` by value",
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                async fn a(n: u8);
            }
        ),
        "must take `&self`",
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                async fn a();
            }
        ),
        "must take `&self`",
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                async fn a(self: Box<Self>);
            }
        ),
        "typed `self: ..`",
    );
}

#[test]
fn err_borrowed() {
    one_err(
        quote!(),
        quote!(
            trait T {
                async fn a(&self, s: &str);
            }
        ),
        "borrowed types",
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                async fn a(&self, s: Vec<&'static str>);
            }
        ),
        "borrowed types",
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                async fn a(&self, s: Cow<'a, str>);
            }
        ),
        "lifetimes are not allowed",
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                async fn a(&self) -> &str;
            }
        ),
        "service return types",
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                async fn a(&self, f: fn(&u8));
            }
        ),
        "borrowed types",
    );
    // Two bad arguments, two errors.
    assert_eq!(
        errs(
            quote!(),
            quote!(
                trait T {
                    async fn a(&self, x: &u8, y: &u8);
                }
            )
        )
        .len(),
        2
    );
}

#[test]
fn err_generics_and_where() {
    one_err(
        quote!(),
        quote!(
            trait T<X> {
                async fn a(&self);
            }
        ),
        "generic parameters",
    );
    one_err(
        quote!(),
        quote!(
            trait T<'a> {
                async fn a(&self);
            }
        ),
        "generic parameters",
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                async fn a<X>(&self);
            }
        ),
        "generic parameters",
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                async fn a<'a>(&self);
            }
        ),
        "generic parameters",
    );
    one_err(
        quote!(),
        quote!(
            trait T where
                Self: Sized,
            {
                async fn a(&self);
            }
        ),
        "where-clause",
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                async fn a(&self)
                where
                    Self: Sized;
            }
        ),
        "where-clause",
    );
}

#[test]
fn err_impl_trait() {
    one_err(
        quote!(),
        quote!(
            trait T {
                async fn a(&self, x: impl Into<u8>);
            }
        ),
        "`impl Trait` is not allowed in service method arguments",
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                async fn a(&self) -> impl Send;
            }
        ),
        "return types",
    );
}

#[test]
fn err_duplicate_ids() {
    let e = errs(
        quote!(),
        quote! {
            trait T {
                async fn a(&self);
                async fn b(&self);
                #[method(id = 1)] async fn c(&self);
            }
        },
    );
    assert_eq!(e, ["duplicate method number 1 (already used by `a`); give one of them a different #[method(id = ..)]"]);
    // Explicit first, positional second: reported on the second method.
    let e = errs(
        quote!(),
        quote!(
            trait T {
                #[method(id = 2)]
                async fn a(&self);
                async fn b(&self);
            }
        ),
    );
    assert_eq!(e.len(), 1);
    assert!(e[0].contains("already used by `a`"));
}

#[test]
fn err_oneway() {
    one_err(
        quote!(),
        quote!(
            trait T {
                #[oneway]
                async fn a(&self) -> u8;
            }
        ),
        "must return `()`",
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                #[oneway]
                async fn a(&self) -> Streaming<u8>;
            }
        ),
        "cannot stream",
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                #[oneway(later)]
                async fn a(&self);
            }
        ),
        "unknown acknowledgement `later`",
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                #[oneway]
                #[oneway]
                async fn a(&self);
            }
        ),
        "duplicate #[oneway]",
    );
    // `-> ()` spelled out is fine.
    ok(
        quote!(),
        quote!(
            trait T {
                #[oneway(delivery)]
                async fn a(&self) -> ();
            }
        ),
    );
}

#[test]
fn err_method_attr() {
    one_err(
        quote!(),
        quote!(
            trait T {
                #[method(idx = 1)]
                async fn a(&self);
            }
        ),
        "unknown #[method] argument `idx`",
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                #[method(id = "1")]
                async fn a(&self);
            }
        ),
        "integer literal",
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                #[method(id = 4294967296)]
                async fn a(&self);
            }
        ),
        "fit in a `u32`",
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                #[method]
                async fn a(&self);
            }
        ),
        "#[method(id = N)]",
    );
}

#[test]
fn err_service_args() {
    one_err(
        quote!(nme = "x"),
        quote!(
            trait T {}
        ),
        "unknown #[service] argument `nme`",
    );
    one_err(
        quote!(name = "x", name = "y"),
        quote!(
            trait T {}
        ),
        "duplicate `name`",
    );
    one_err(
        quote!(name = 1),
        quote!(
            trait T {}
        ),
        "string literal",
    );
    one_err(
        quote!(name = ""),
        quote!(
            trait T {}
        ),
        "must not be empty",
    );
    one_err(
        quote!(version = "1"),
        quote!(
            trait T {}
        ),
        "integer literal",
    );
    assert_eq!(
        errs(
            quote!(version = -1),
            quote!(
                trait T {}
            )
        )
        .len(),
        1
    );
    one_err(
        quote!(crate = "not a path"),
        quote!(
            trait T {}
        ),
        "expected a path",
    );
    one_err(
        quote!(name),
        quote!(
            trait T {}
        ),
        "expected `name = ",
    );
    // Several at once.
    assert_eq!(
        errs(
            quote!(a = 1, b = 2),
            quote!(
                trait T {}
            )
        )
        .len(),
        2
    );
}

#[test]
fn err_default_body() {
    one_err(
        quote!(),
        quote!(
            trait T {
                async fn a(&self) -> u8 {
                    1
                }
            }
        ),
        "must not have a default body",
    );
}

#[test]
fn err_non_trait() {
    one_err(
        quote!(),
        quote!(
            struct S;
        ),
        "can only be applied to a trait",
    );
    one_err(
        quote!(),
        quote!(
            fn f() {}
        ),
        "can only be applied to a trait",
    );
    one_err(
        quote!(),
        quote!(impl T for S {}),
        "can only be applied to a trait",
    );
}

#[test]
fn err_other_items_and_patterns() {
    one_err(
        quote!(),
        quote!(
            trait T {
                const X: u8;
            }
        ),
        "only contain `async fn`",
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                type X;
            }
        ),
        "only contain `async fn`",
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                async fn a(&self, (x, y): (u8, u8));
            }
        ),
        "plain identifiers",
    );
    one_err(
        quote!(),
        quote!(
            unsafe trait T {
                async fn a(&self);
            }
        ),
        "must not be `unsafe`",
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                async unsafe fn a(&self);
            }
        ),
        "must not be `unsafe`",
    );
}

#[test]
fn err_name_clashes() {
    one_err(
        quote!(),
        quote!(
            trait T {
                async fn connect(&self);
            }
        ),
        "clashes with the generated client's own `connect`",
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                async fn a(&self);
                async fn start_a(&self);
            }
        ),
        "`start_a` clashes with the generated deferred-call method for `a`",
    );
    // No start_ for oneway methods, so no clash.
    ok(
        quote!(),
        quote!(
            trait T {
                #[oneway]
                async fn a(&self);
                async fn start_a(&self);
            }
        ),
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                async fn a_b(&self);
                async fn a__b(&self);
            }
        ),
        "same enum variant `AB`",
    );
}

#[test]
fn collects_many_errors() {
    let e = errs(
        quote!(nme = "x"),
        quote! {
            trait T<X> {
                fn a(&mut self, s: &str);
                #[oneway] async fn b(&self) -> u8;
                async fn c(&self) { }
            }
        },
    );
    // unknown arg, generics, not async, &mut self, &str, oneway return, default body
    assert_eq!(e.len(), 7, "{e:#?}");
}

#[test]
fn fallback_strips_helper_attributes() {
    let f = parse(
        quote!(),
        quote!(
            trait T {
                #[oneway]
                #[doc = "x"]
                async fn a(&self) -> u8;
            }
        ),
    )
    .err()
    .unwrap();
    let s = f.fallback.to_string();
    assert!(!s.contains("oneway"), "{s}");
    assert!(s.contains("doc"), "{s}");
    assert!(s.contains("async fn a"), "{s}");
    assert!(s.contains("allow (async_fn_in_trait)"), "{s}");
}

#[test]
fn err_streaming_without_item() {
    one_err(
        quote!(),
        quote!(
            trait T {
                async fn a(&self) -> Streaming;
            }
        ),
        "`Streaming<T>`",
    );
    one_err(
        quote!(),
        quote!(
            trait T {
                async fn a(&self) -> Streaming<u8, u8>;
            }
        ),
        "`Streaming<T>`",
    );
}
