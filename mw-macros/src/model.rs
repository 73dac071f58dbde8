//! The validated model of a `#[service]` trait.
//!
//! `parse.rs` builds it (and reports every mistake it finds), `expand.rs` turns
//! it into code. Nothing in here is fallible.

use proc_macro2::Span;
use syn::{Attribute, Ident, Type, TypeParamBound, Visibility};

/// A whole `#[service]` trait.
#[derive(Debug)]
pub struct Service {
    /// Attributes (docs, lints, ...) of the trait, passed through unchanged.
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub ident: Ident,
    /// Supertraits the user wrote; `Send + Sync + 'static` are added on expansion.
    pub supertraits: Vec<TypeParamBound>,
    /// Service name on the wire (`name = ".."`, defaults to the trait's name).
    pub name: String,
    /// Service version on the wire (`version = N`, defaults to 1).
    pub version: u32,
    /// `crate = "path"` override for the runtime crate.
    pub krate: Option<syn::Path>,
    pub methods: Vec<Method>,
}

/// One `async fn` of the trait.
#[derive(Debug)]
pub struct Method {
    /// User attributes (docs, lints, ...) without our `#[oneway]` / `#[method]`.
    pub attrs: Vec<Attribute>,
    pub ident: Ident,
    /// The user's `fn` token, kept so diagnostics about the trait method point at it.
    pub fn_token: syn::token::Fn,
    /// Method number on the wire.
    pub id: u32,
    /// Where the method number came from (the `id = N` literal or the method name).
    pub id_span: Span,
    pub args: Vec<Arg>,
    /// The declared return type (`()` if none was written).
    pub output: Type,
    pub kind: MethodKind,
}

impl Method {
    /// The method name as a string, without any `r#` prefix.
    pub fn name(&self) -> String {
        let s = self.ident.to_string();
        s.strip_prefix("r#").map(str::to_owned).unwrap_or(s)
    }

    /// CamelCase variant name used in the request/response enums.
    pub fn variant_name(&self) -> String {
        camel_case(&self.name())
    }
}

/// One argument of a method (after `&self`).
#[derive(Debug)]
pub struct Arg {
    pub attrs: Vec<Attribute>,
    pub ident: Ident,
    pub ty: Type,
}

/// How a method is called.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // built once per method at compile time
pub enum MethodKind {
    /// Request/response; the response is the return type.
    Unary,
    /// Request/response returning `Result<ok, err>` where `err` is an
    /// application error transported to the client.
    Fallible { ok: Type, err: Type },
    /// No response; the acknowledgement level is given.
    Oneway(Ack),
    /// Server streaming (`-> Streaming<item>`).
    Stream { item: Type },
}

/// Acknowledgement level of a `#[oneway]` method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    None,
    Receipt,
    Delivery,
}

impl Ack {
    pub fn variant(self) -> &'static str {
        match self {
            Ack::None => "None",
            Ack::Receipt => "Receipt",
            Ack::Delivery => "Delivery",
        }
    }
}

/// `get_user_by_id` -> `GetUserById`.
pub fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    for part in snake.split('_').filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    if out.is_empty() {
        // A name made only of underscores; keep something usable.
        out.push_str("Method");
    }
    out
}
