//! The `#[service]` expansion uses only absolute paths: it compiles in a module with
//! no prelude at all (like tarpc's `tests/proc_macro_hygene.rs`).
#![deny(warnings)]

#[allow(dead_code)]
mod no_prelude {
    #![no_implicit_prelude]

    #[derive(::core::fmt::Debug, ::serde::Serialize, ::serde::Deserialize)]
    pub struct MathError;

    /// Every method kind.
    #[::mw::service(name = "hygiene", version = 2)]
    pub trait Hygiene {
        async fn unary(&self, n: u64) -> u64;
        async fn none(&self);
        async fn many(
            &self,
            a: ::std::string::String,
            b: ::std::vec::Vec<u8>,
            c: (u8, i64),
        ) -> bool;
        async fn fallible(&self, a: i64) -> ::core::result::Result<i64, MathError>;
        #[oneway]
        async fn fire(&self, line: ::std::string::String);
        #[oneway(receipt)]
        async fn receipt(&self);
        #[oneway(delivery)]
        async fn delivery(&self, x: u8) -> ();
        async fn ticks(&self, count: u32) -> ::mw::rpc::Streaming<u64>;
        #[method(id = 100)]
        async fn explicit(&self) -> ::std::string::String;
    }

    /// The same through the runtime crate's own name.
    #[::mw::service(crate = "::mw::rpc")]
    pub(crate) trait Overridden {
        async fn get(&self) -> u8;
    }

    pub struct Impl;

    impl Hygiene for Impl {
        async fn unary(&self, n: u64) -> u64 {
            n
        }
        async fn none(&self) {}
        async fn many(
            &self,
            _a: ::std::string::String,
            _b: ::std::vec::Vec<u8>,
            _c: (u8, i64),
        ) -> bool {
            true
        }
        async fn fallible(&self, a: i64) -> ::core::result::Result<i64, MathError> {
            ::core::result::Result::Ok(a)
        }
        async fn fire(&self, _line: ::std::string::String) {}
        async fn receipt(&self) {}
        async fn delivery(&self, _x: u8) {}
        async fn ticks(&self, count: u32) -> ::mw::rpc::Streaming<u64> {
            ::std::boxed::Box::pin(::futures::stream::iter(
                0..<u64 as ::core::convert::From<u32>>::from(count),
            ))
        }
        async fn explicit(&self) -> ::std::string::String {
            ::std::string::String::new()
        }
    }

    impl Overridden for Impl {
        async fn get(&self) -> u8 {
            1
        }
    }

    pub fn server() -> ::std::boxed::Box<dyn ::mw::rpc::Service> {
        ::std::boxed::Box::new(HygieneServer::new(Impl))
    }

    pub fn server2() -> ::std::boxed::Box<dyn ::mw::rpc::Service> {
        ::std::boxed::Box::new(OverriddenServer::new(Impl))
    }

    pub async fn client(c: HygieneClient) -> ::core::result::Result<u64, ::mw::rpc::RpcError> {
        let handle = c.start_unary(1).await?;
        ::core::mem::drop(handle);
        c.fire(::std::string::String::new()).await?;
        let _ = c.ticks(1).await?;
        c.unary(1).await
    }
}

#[test]
fn expands_without_prelude() {
    let s = no_prelude::server();
    assert_eq!(s.id(), mw::rpc::ServiceId::new("hygiene", 2));
    let ids: Vec<u32> = s.methods().iter().map(|m| m.id).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6, 7, 8, 100]);
    assert_eq!(no_prelude::server2().methods().len(), 1);
}
