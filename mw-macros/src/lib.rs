//! The `#[service]` attribute macro of mw.
//!
//! Use it through `mw::service` or `mw_rpc::service`; see the documentation of
//! [`service`] for what it accepts and generates.
//!
//! The implementation is split in three steps, so that validation never has to
//! think about the generated code and expansion never meets an invalid trait:
//! `parse.rs` validates the attribute and the trait into a `model.rs`, and
//! `expand.rs` turns the model into code. Errors are collected and reported on the offending tokens; on failure
//! the original trait is still emitted next to the `compile_error!`s.

#![deny(missing_docs)]

use proc_macro::TokenStream;

mod expand;
mod krate;
mod model;
mod parse;

/// Turns a trait of `async fn`s into an mw RPC service.
///
/// ```ignore
/// #[mw::service(name = "inc", version = 1)]   // both optional
/// pub trait Increment {
///     async fn inc(&self, n: u64) -> u64;                            // unary
///     async fn div(&self, a: i64, b: i64) -> Result<i64, MathError>; // fallible
///     #[oneway] async fn log(&self, line: String);                   // no ack
///     #[oneway(receipt)] async fn note(&self, line: String);         // ack on receipt
///     #[oneway(delivery)] async fn poke(&self);                      // ack on delivery
///     async fn ticks(&self, count: u32) -> Streaming<u64>;           // server streaming
///     #[method(id = 7)] async fn other(&self) -> String;             // explicit number
/// }
/// ```
///
/// Arguments of `#[service(..)]`: `name = ".."` (wire name, default: the trait
/// name), `version = N` (default 1), `crate = "path"` (path of the `mw-rpc`
/// runtime, default: found from Cargo.toml, `::mw_rpc` or `::mw::rpc`).
///
/// Method numbers default to the method's position (1, 2, 3, ...);
/// `#[method(id = N)]` sets one explicitly. They must be unique.
///
/// Generates, with the trait's visibility:
/// - the trait itself, with each `async fn` turned into a method returning
///   `impl Future + Send` and `Send + Sync + 'static` supertraits (implement it
///   with plain `async fn`s);
/// - `<Trait>Request` / `<Trait>Response` enums documenting the messages;
/// - `<Trait>Client`, with one `async` method per trait method (plus a
///   `start_<method>` deferred variant for request/response methods);
/// - `<Trait>Server<S>`, implementing `mw_rpc::Service` for any `S: Trait`.
#[proc_macro_attribute]
pub fn service(attr: TokenStream, item: TokenStream) -> TokenStream {
    match parse::parse(attr.into(), item.into()) {
        Ok(service) => {
            let krate = service.krate.clone().unwrap_or_else(krate::runtime_path);
            expand::expand(&service, &krate).into()
        }
        Err(parse::Failure { errors, fallback }) => {
            let errors = errors.to_compile_error();
            quote::quote!(#fallback #errors).into()
        }
    }
}
