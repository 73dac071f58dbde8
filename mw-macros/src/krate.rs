//! Finding the path of the `mw-rpc` runtime crate from the caller's Cargo.toml.

use proc_macro2::Span;
use proc_macro_crate::{crate_name, FoundCrate};
use syn::{Ident, Path};

/// `::mw_rpc` (or its renamed equivalent) if the calling package depends on
/// `mw-rpc` or is `mw-rpc`; else `::mw::rpc` if it depends on (or is) the
/// facade `mw`; else `::mw_rpc`.
pub fn runtime_path() -> Path {
    let ident = |name: &str| Ident::new(name, Span::call_site());
    if let Ok(found) = crate_name("mw-rpc") {
        let name = match found {
            // mw-rpc has `extern crate self as mw_rpc;`
            FoundCrate::Itself => "mw_rpc".to_owned(),
            FoundCrate::Name(n) => n,
        };
        let name = ident(&name);
        return syn::parse_quote!(::#name);
    }
    if let Ok(found) = crate_name("mw") {
        let name = match found {
            // the facade has `extern crate self as mw;`
            FoundCrate::Itself => "mw".to_owned(),
            FoundCrate::Name(n) => n,
        };
        let name = ident(&name);
        return syn::parse_quote!(::#name::rpc);
    }
    syn::parse_quote!(::mw_rpc)
}
