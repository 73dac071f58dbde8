//! Finding the path of the `mw-rpc` runtime crate from the caller's Cargo.toml.

use proc_macro2::Span;
use proc_macro_crate::{crate_name, FoundCrate};
use syn::{Ident, Path};

/// `::mw_rpc` inside `mw-rpc` itself; else `::mw::rpc` (or the facade's renamed
/// equivalent) if the calling package depends on (or is) the facade `mw`; else
/// `::mw_rpc` (or its renamed equivalent) if it depends on `mw-rpc`; else `::mw_rpc`.
///
/// The facade comes first because the manifest lookup cannot tell dependencies from
/// dev-dependencies: an application on the facade that also dev-depends on `mw-rpc`
/// (say, for a test helper) must still get paths its library build can resolve.
pub fn runtime_path() -> Path {
    let ident = |name: &str| Ident::new(name, Span::call_site());
    if let Ok(FoundCrate::Itself) = crate_name("mw-rpc") {
        return syn::parse_quote!(::mw_rpc);
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
    if let Ok(found) = crate_name("mw-rpc") {
        let name = match found {
            // mw-rpc has `extern crate self as mw_rpc;`
            FoundCrate::Itself => "mw_rpc".to_owned(),
            FoundCrate::Name(n) => n,
        };
        let name = ident(&name);
        return syn::parse_quote!(::#name);
    }
    syn::parse_quote!(::mw_rpc)
}
