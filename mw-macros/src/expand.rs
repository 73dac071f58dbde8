//! Code generation: [`Service`] -> trait + request/response enums + client + server.
//!
//! Every path in the output is absolute (`::core::..`, `::std::..`, `#krate::..`)
//! so the expansion compiles under `#![no_implicit_prelude]`. Locals and
//! parameters that the generated code introduces next to user-named arguments
//! use `Span::mixed_site()` so that they can never clash with them.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{Ident, Path};

use crate::model::{Method, MethodKind, Service};

/// Generate everything for `service`, using `krate` as the path of the
/// `mw-rpc` runtime crate (e.g. `::mw_rpc` or `::mw::rpc`).
pub fn expand(service: &Service, krate: &Path) -> TokenStream {
    let cx = Cx::new(service, krate);
    let tr = expand_trait(&cx);
    let enums = expand_enums(&cx);
    let client = expand_client(&cx);
    let server = expand_server(&cx);
    quote! {
        #tr
        #enums
        #client
        #server
    }
}

/// Names and pieces shared by all generators.
struct Cx<'a> {
    svc: &'a Service,
    krate: &'a Path,
    request: Ident,
    response: Ident,
    client: Ident,
    server: Ident,
    /// `#krate::ServiceId::new("name", version)`
    service_id: TokenStream,
    /// "service `name` v1"
    label: String,
}

impl<'a> Cx<'a> {
    fn new(svc: &'a Service, krate: &'a Path) -> Self {
        let t = &svc.ident;
        let name = &svc.name;
        let version = Literal::u32_unsuffixed(svc.version);
        Cx {
            svc,
            krate,
            request: format_ident!("{}Request", t),
            response: format_ident!("{}Response", t),
            client: format_ident!("{}Client", t),
            server: format_ident!("{}Server", t),
            service_id: quote!(#krate::ServiceId::new(#name, #version)),
            label: format!("service `{}` v{}", svc.name, svc.version),
        }
    }
}

fn doc(text: impl AsRef<str>) -> TokenStream {
    let text = text.as_ref();
    quote!(#[doc = #text])
}

fn method_id(m: &Method) -> Literal {
    Literal::u32_unsuffixed(m.id)
}

/// `a: A, b: B` of a method (without `&self`).
fn params(m: &Method) -> Vec<TokenStream> {
    m.args
        .iter()
        .map(|a| {
            let (ident, ty) = (&a.ident, &a.ty);
            quote!(#ident: #ty)
        })
        .collect()
}

/// `(a, b,)` -- the argument tuple that goes on the wire.
fn arg_tuple(m: &Method) -> TokenStream {
    let idents = m.args.iter().map(|a| &a.ident);
    quote!((#(#idents,)*))
}

/// `(A, B,)` -- its type.
fn arg_tuple_type(m: &Method) -> TokenStream {
    let tys = m.args.iter().map(|a| &a.ty);
    quote!((#(#tys,)*))
}

// ---------------------------------------------------------------------------
// 1. The trait, with Send futures.

fn expand_trait(cx: &Cx) -> TokenStream {
    let svc = cx.svc;
    let (attrs, vis, ident) = (&svc.attrs, &svc.vis, &svc.ident);
    let supers = &svc.supertraits;
    let methods = svc.methods.iter().map(|m| {
        let attrs = &m.attrs;
        let name = &m.ident;
        let fn_token = &m.fn_token;
        let out = &m.output;
        let args = m.args.iter().map(|a| {
            let (attrs, ident, ty) = (&a.attrs, &a.ident, &a.ty);
            quote!(#(#attrs)* #ident: #ty)
        });
        // Spanned on the method so that diagnostics about the rewritten method
        // (missing docs, mismatched impls, ...) point at the user's method.
        let span = m.ident.span();
        quote_spanned! {span=>
            #(#attrs)*
            #fn_token #name(&self #(, #args)*)
                -> impl ::core::future::Future<Output = #out> + ::core::marker::Send;
        }
    });
    quote! {
        #(#attrs)*
        #vis trait #ident: #(#supers +)* ::core::marker::Send + ::core::marker::Sync + 'static {
            #(#methods)*
        }
    }
}

// ---------------------------------------------------------------------------
// 2. Request / response enums.

/// `::mw_rpc::__private::serde` as a string for `#[serde(crate = "..")]`.
fn serde_path_string(krate: &Path) -> String {
    let mut s = String::new();
    if krate.leading_colon.is_some() {
        s.push_str("::");
    }
    let segs: Vec<String> = krate
        .segments
        .iter()
        .map(|seg| seg.ident.to_string())
        .collect();
    s.push_str(&segs.join("::"));
    s.push_str("::__private::serde");
    s
}

fn expand_enums(cx: &Cx) -> TokenStream {
    let (svc, krate) = (cx.svc, cx.krate);
    let vis = &svc.vis;
    let trait_name = &svc.ident;
    let serde_crate = serde_path_string(krate);
    let derive = quote! {
        #[derive(
            ::core::fmt::Debug,
            #krate::__private::serde::Serialize,
            #krate::__private::serde::Deserialize
        )]
        #[serde(crate = #serde_crate)]
    };

    let req_variants = svc.methods.iter().map(|m| {
        let v = Ident::new(&m.variant_name(), m.ident.span());
        let d = doc(format!("Arguments of `{}` (method {}).", m.name(), m.id));
        let fields = m.args.iter().map(|a| {
            let (ident, ty) = (&a.ident, &a.ty);
            let d = doc(format!("Argument `{}`.", ident));
            quote!(#d #ident: #ty)
        });
        quote!(#d #v { #(#fields),* })
    });
    let resp_variants = svc.methods.iter().map(|m| {
        let v = Ident::new(&m.variant_name(), m.ident.span());
        let (ty, what) = match &m.kind {
            MethodKind::Stream { item } => (quote!(#item), "One stream item"),
            MethodKind::Oneway(_) => (quote!(()), "Nothing (one-way)"),
            MethodKind::Unary | MethodKind::Fallible { .. } => {
                let out = &m.output;
                (quote!(#out), "Response")
            }
        };
        let d = doc(format!("{what} of `{}` (method {}).", m.name(), m.id));
        quote!(#d #v(#ty))
    });

    let (request, response) = (&cx.request, &cx.response);
    let req_doc = doc(format!(
        "Requests of {} (trait [`{trait_name}`]): one variant per method, holding its arguments. \
         Documents the interface; on the wire only the argument tuple is sent.",
        cx.label
    ));
    let resp_doc = doc(format!(
        "Responses of {} (trait [`{trait_name}`]): one variant per method, holding its result.",
        cx.label
    ));
    quote! {
        #req_doc
        #derive
        #vis enum #request {
            #(#req_variants,)*
        }

        #resp_doc
        #derive
        #vis enum #response {
            #(#resp_variants,)*
        }
    }
}

// ---------------------------------------------------------------------------
// 3. Client.

fn expand_client(cx: &Cx) -> TokenStream {
    let (svc, krate) = (cx.svc, cx.krate);
    let vis = &svc.vis;
    let client = &cx.client;
    let service_id = &cx.service_id;
    let trait_name = &svc.ident;

    let methods = svc.methods.iter().map(|m| client_method(cx, m));

    let struct_doc = doc(format!(
        "Generated client for {} (trait [`{trait_name}`]). Cheap to clone; clones share the connection.",
        cx.label
    ));
    let service_doc = doc(format!("Wire identity of {}.", cx.label));
    quote! {
        #struct_doc
        #[derive(::core::clone::Clone, ::core::fmt::Debug)]
        #vis struct #client {
            channel: #krate::Channel,
        }

        impl #client {
            #service_doc
            pub const SERVICE: #krate::ServiceId = #service_id;

            /// Wraps an existing channel.
            pub fn new(channel: #krate::Channel) -> Self {
                Self { channel }
            }

            /// Connects to `addr` and returns a client over the new channel.
            pub async fn connect(
                addr: &str,
            ) -> ::core::result::Result<Self, #krate::RpcError> {
                ::core::result::Result::map(#krate::Channel::connect(addr).await, Self::new)
            }

            /// The underlying channel.
            pub fn channel(&self) -> &#krate::Channel {
                &self.channel
            }

            /// A client sharing this connection whose calls time out after `timeout`.
            pub fn with_timeout(&self, timeout: ::core::time::Duration) -> Self {
                Self { channel: self.channel.with_timeout(timeout) }
            }

            #(#methods)*
        }
    }
}

fn client_method(cx: &Cx, m: &Method) -> TokenStream {
    let krate = cx.krate;
    let name = &m.ident;
    let id = method_id(m);
    let params = params(m);
    let args = arg_tuple(m);
    let attrs = m
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc") || a.path().is_ident("cfg"));
    let attrs = quote!(#(#attrs)*);
    let mname = m.name();

    match &m.kind {
        MethodKind::Unary | MethodKind::Fallible { .. } => {
            let start = format_ident!("start_{}", mname, span = m.ident.span());
            let (ret, handle, call, start_call) = match &m.kind {
                MethodKind::Fallible { ok, err } => (
                    quote!(::core::result::Result<#ok, #krate::RpcError<#err>>),
                    quote!(::core::result::Result<#krate::ReplyHandle<#ok, #err>, #krate::RpcError<#err>>),
                    quote!(call_fallible::<_, #ok, #err>),
                    quote!(start_call_fallible::<_, #ok, #err>),
                ),
                _ => {
                    let out = &m.output;
                    (
                        quote!(::core::result::Result<#out, #krate::RpcError>),
                        quote!(::core::result::Result<#krate::ReplyHandle<#out>, #krate::RpcError>),
                        quote!(call::<_, #out>),
                        quote!(start_call::<_, #out>),
                    )
                }
            };
            let d_call = doc(format!(
                "Calls `{mname}` (method {}) and waits for the response.",
                m.id
            ));
            let d_start = doc(format!(
                "Sends a `{mname}` request (method {}) without waiting for the response: \
                 the request has been sent when this returns; await the handle for the response.",
                m.id
            ));
            quote! {
                #attrs
                #d_call
                pub async fn #name(&self #(, #params)*) -> #ret {
                    self.channel.#call(Self::SERVICE, #id, &#args).await
                }

                #d_start
                pub async fn #start(&self #(, #params)*) -> #handle {
                    self.channel.#start_call(Self::SERVICE, #id, &#args).await
                }
            }
        }
        MethodKind::Oneway(ack) => {
            let ack_variant = Ident::new(ack.variant(), Span::call_site());
            let what = match ack {
                crate::model::Ack::None => "returns once the message is sent (no acknowledgement)",
                crate::model::Ack::Receipt => {
                    "returns once the server's middleware acknowledged receipt"
                }
                crate::model::Ack::Delivery => {
                    "returns once the server handed the message to the implementation"
                }
            };
            let d = doc(format!(
                "One-way call of `{mname}` (method {}); {what}.",
                m.id
            ));
            quote! {
                #attrs
                #d
                pub async fn #name(&self #(, #params)*)
                    -> ::core::result::Result<(), #krate::RpcError>
                {
                    self.channel.oneway(Self::SERVICE, #id, &#args, #krate::Ack::#ack_variant).await
                }
            }
        }
        MethodKind::Stream { item } => {
            let d = doc(format!(
                "Calls the streaming method `{mname}` (method {}) and returns the stream of items.",
                m.id
            ));
            quote! {
                #attrs
                #d
                pub async fn #name(&self #(, #params)*)
                    -> ::core::result::Result<#krate::ClientStream<#item>, #krate::RpcError>
                {
                    self.channel.call_stream::<_, #item>(Self::SERVICE, #id, &#args).await
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 4. Server.

fn expand_server(cx: &Cx) -> TokenStream {
    // The implementation type parameter; only the trait's name appears next to it.
    let s = Ident::new(
        if cx.svc.ident == "S" { "Impl" } else { "S" },
        Span::call_site(),
    );
    let server_struct = server_struct(cx, &s);
    let service_impl = service_impl(cx);
    quote! {
        #server_struct
        #service_impl
    }
}

/// The generated server type: the struct holding the implementation, its constructors,
/// `Clone` and `Debug`.
fn server_struct(cx: &Cx, s: &Ident) -> TokenStream {
    let (svc, krate) = (cx.svc, cx.krate);
    let vis = &svc.vis;
    let trait_name = &svc.ident;
    let server = &cx.server;
    let service_id = &cx.service_id;
    let server_name = server.to_string();
    let struct_doc = doc(format!(
        "Generated server for {} (trait [`{trait_name}`]): dispatches incoming calls to an \
         implementation `S`. Register it with the RPC server as a `Service`.",
        cx.label
    ));
    let service_doc = doc(format!("Wire identity of {}.", cx.label));
    quote! {
        #struct_doc
        #vis struct #server<#s> {
            inner: ::std::sync::Arc<#s>,
        }

        impl<#s: #trait_name> #server<#s> {
            #service_doc
            pub const SERVICE: #krate::ServiceId = #service_id;

            /// Serves `inner`.
            pub fn new(inner: #s) -> Self {
                Self { inner: ::std::sync::Arc::new(inner) }
            }

            /// Serves an implementation that is already shared.
            pub fn from_arc(inner: ::std::sync::Arc<#s>) -> Self {
                Self { inner }
            }

            /// The implementation.
            pub fn inner(&self) -> &::std::sync::Arc<#s> {
                &self.inner
            }
        }

        impl<#s> ::core::clone::Clone for #server<#s> {
            fn clone(&self) -> Self {
                Self { inner: <::std::sync::Arc<#s> as ::core::clone::Clone>::clone(&self.inner) }
            }
        }

        impl<#s> ::core::fmt::Debug for #server<#s> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::fmt::DebugStruct::finish_non_exhaustive(
                    &mut ::core::fmt::Formatter::debug_struct(f, #server_name),
                )
            }
        }
    }
}

/// The `Service` impl: the method table and the dispatch from method number to handler.
fn service_impl(cx: &Cx) -> TokenStream {
    let krate = cx.krate;
    let trait_name = &cx.svc.ident;
    let server = &cx.server;
    // The generic parameter of the `Service` impl sits next to user types in
    // the argument tuples; give it a name no user type will have.
    let imp = Ident::new("__MwImpl", Span::mixed_site());
    // Locals/parameters next to user-named arguments: hygienic.
    let method = Ident::new("method", Span::mixed_site());
    let args = Ident::new("args", Span::mixed_site());
    let other = Ident::new("other", Span::mixed_site());
    let infos = cx.svc.methods.iter().map(|m| method_info(cx, m));
    let arms = cx
        .svc
        .methods
        .iter()
        .map(|m| dispatch_arm(cx, m, &imp, &args));
    quote! {
        impl<#imp: #trait_name> #krate::Service for #server<#imp> {
            fn id(&self) -> #krate::ServiceId {
                Self::SERVICE
            }

            fn methods(&self) -> &'static [#krate::MethodInfo] {
                const METHODS: &[#krate::MethodInfo] = &[#(#infos),*];
                METHODS
            }

            fn call(
                &self,
                #method: u32,
                #args: #krate::__private::Bytes,
            ) -> ::core::result::Result<#krate::Handler, #krate::ServerError> {
                match #method {
                    #(#arms)*
                    #other => ::core::result::Result::Err(#krate::ServerError::UnknownMethod(#other)),
                }
            }
        }
    }
}

/// One entry of the `Service::methods` table.
fn method_info(cx: &Cx, m: &Method) -> TokenStream {
    let krate = cx.krate;
    let id = method_id(m);
    let name = m.name();
    let kind = match &m.kind {
        MethodKind::Unary | MethodKind::Fallible { .. } => quote!(#krate::MethodKind::Unary),
        MethodKind::Stream { .. } => quote!(#krate::MethodKind::Stream),
        MethodKind::Oneway(ack) => {
            let a = Ident::new(ack.variant(), Span::call_site());
            quote!(#krate::MethodKind::Oneway(#krate::Ack::#a))
        }
    };
    quote!(#krate::MethodInfo { id: #id, name: #name, kind: #kind })
}

/// One arm of `Service::call`: decode the arguments, call the implementation.
fn dispatch_arm(cx: &Cx, m: &Method, imp: &Ident, args: &Ident) -> TokenStream {
    let krate = cx.krate;
    let trait_name = &cx.svc.ident;
    let inner = Ident::new("inner", Span::mixed_site());
    let id = method_id(m);
    let name = &m.ident;
    let pat = arg_tuple(m);
    let ty = arg_tuple_type(m);
    let call_args = m.args.iter().map(|a| &a.ident);
    let wrap = match m.kind {
        MethodKind::Stream { .. } => quote!(#krate::__private::stream),
        _ => quote!(#krate::__private::unary),
    };
    quote! {
        #id => {
            let #pat: #ty = #krate::__private::decode(&#args)?;
            let #inner = <::std::sync::Arc<#imp> as ::core::clone::Clone>::clone(&self.inner);
            ::core::result::Result::Ok(#wrap(async move {
                <#imp as #trait_name>::#name(&*#inner #(, #call_args)*).await
            }))
        }
    }
}

#[cfg(test)]
mod tests;
