//! Parsing and validation: attribute arguments + trait -> [`Service`].
//!
//! Every problem is reported on the token that caused it, and as many problems
//! as possible are collected in one pass. On failure the caller still gets a
//! fallback item (the trait with our helper attributes removed) to emit next to
//! the errors, so that IDEs and the rest of the crate keep working.

use std::collections::HashMap;
use std::fmt::Display;

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{
    Attribute, Expr, ExprLit, FnArg, GenericArgument, Item, ItemTrait, Lit, Meta, Pat,
    PathArguments, ReturnType, Signature, Token, TraitItem, TraitItemFn, Type,
};

use crate::model::{Ack, Arg, Method, MethodKind, Service};

/// Names of the helper attributes understood on methods.
const ONEWAY: &str = "oneway";
const METHOD: &str = "method";

/// Inherent methods of the generated client that user methods must not shadow.
const CLIENT_RESERVED: &[&str] = &["new", "connect", "channel", "with_timeout"];

/// Result of a failed parse: the errors and what to emit in place of the item.
pub struct Failure {
    pub errors: syn::Error,
    pub fallback: TokenStream,
}

/// Accumulates errors (tarpc's `extend_errors!`).
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    pub fn push(&mut self, err: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(err),
            None => self.0 = Some(err),
        }
    }

    pub fn spanned<T: ToTokens, M: Display>(&mut self, tokens: T, msg: M) {
        self.push(syn::Error::new_spanned(tokens, msg));
    }

    pub fn at<M: Display>(&mut self, span: Span, msg: M) {
        self.push(syn::Error::new(span, msg));
    }

    pub fn into_error(self) -> Option<syn::Error> {
        self.0
    }
}

/// Arguments of `#[service(...)]`.
#[derive(Debug, Default)]
pub struct ServiceArgs {
    pub name: Option<String>,
    pub version: Option<u32>,
    pub krate: Option<syn::Path>,
}

/// Parse `#[service(attr)] item` into a [`Service`].
pub fn parse(attr: TokenStream, item: TokenStream) -> Result<Service, Failure> {
    let mut errors = Errors::default();
    let args = parse_args(attr, &mut errors);

    let item_trait = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Trait(t)) => t,
        Ok(other) => {
            errors.push(not_a_trait(&other));
            return Err(Failure {
                errors: errors.into_error().unwrap(),
                fallback: item,
            });
        }
        Err(e) => {
            errors.push(e);
            return Err(Failure {
                errors: errors.into_error().unwrap(),
                fallback: item,
            });
        }
    };

    let service = parse_trait(args, &item_trait, &mut errors);
    match errors.into_error() {
        None => Ok(service),
        Some(errors) => Err(Failure {
            errors,
            fallback: fallback_trait(item_trait),
        }),
    }
}

/// The trait as written, minus our helper attributes (which would otherwise
/// produce "cannot find attribute" noise) and with the `async fn` lint silenced.
fn fallback_trait(mut item: ItemTrait) -> TokenStream {
    for it in &mut item.items {
        if let TraitItem::Fn(f) = it {
            f.attrs.retain(|a| !is_helper(a));
        }
    }
    quote! {
        #[allow(async_fn_in_trait)]
        #item
    }
}

fn is_helper(attr: &Attribute) -> bool {
    attr.path().is_ident(ONEWAY) || attr.path().is_ident(METHOD)
}

fn not_a_trait(item: &Item) -> syn::Error {
    const MSG: &str = "#[service] can only be applied to a trait";
    let head: TokenStream = match item {
        Item::Struct(s) => {
            let (k, i) = (&s.struct_token, &s.ident);
            quote!(#k #i)
        }
        Item::Enum(e) => {
            let (k, i) = (&e.enum_token, &e.ident);
            quote!(#k #i)
        }
        Item::Union(u) => {
            let (k, i) = (&u.union_token, &u.ident);
            quote!(#k #i)
        }
        Item::Fn(f) => {
            let (k, i) = (&f.sig.fn_token, &f.sig.ident);
            quote!(#k #i)
        }
        Item::Mod(m) => {
            let (k, i) = (&m.mod_token, &m.ident);
            quote!(#k #i)
        }
        Item::Impl(i) => {
            let (k, t) = (&i.impl_token, &i.self_ty);
            quote!(#k #t)
        }
        Item::Type(t) => {
            let (k, i) = (&t.type_token, &t.ident);
            quote!(#k #i)
        }
        Item::TraitAlias(t) => {
            let (k, i) = (&t.trait_token, &t.ident);
            quote!(#k #i)
        }
        other => other.to_token_stream(),
    };
    syn::Error::new_spanned(head, MSG)
}

// ---------------------------------------------------------------------------
// #[service(name = "..", version = N, crate = "..")]

pub fn parse_args(attr: TokenStream, errors: &mut Errors) -> ServiceArgs {
    let mut args = ServiceArgs::default();
    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(attr) {
        Ok(m) => m,
        Err(e) => {
            errors.push(e);
            return args;
        }
    };
    let mut seen: HashMap<String, ()> = HashMap::new();
    for meta in metas {
        let key = match meta.path().get_ident() {
            Some(i) => i.to_string(),
            None => {
                errors.spanned(meta.path(), unknown_service_arg(meta.path()));
                continue;
            }
        };
        if !matches!(key.as_str(), "name" | "version" | "crate") {
            errors.spanned(meta.path(), unknown_service_arg(meta.path()));
            continue;
        }
        if seen.insert(key.clone(), ()).is_some() {
            errors.spanned(meta.path(), format!("duplicate `{key}` argument"));
            continue;
        }
        let value = match &meta {
            Meta::NameValue(nv) => &nv.value,
            _ => {
                errors.spanned(&meta, format!("expected `{key} = {}`", example_value(&key)));
                continue;
            }
        };
        match key.as_str() {
            "name" => match value {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }) => {
                    let v = s.value();
                    if v.is_empty() {
                        errors.spanned(s, "service name must not be empty");
                    } else {
                        args.name = Some(v);
                    }
                }
                other => errors.spanned(other, "expected a string literal, e.g. `name = \"inc\"`"),
            },
            "version" => match value {
                Expr::Lit(ExprLit {
                    lit: Lit::Int(i), ..
                }) => match i.base10_parse::<u32>() {
                    Ok(v) => args.version = Some(v),
                    Err(_) => errors.spanned(i, "service version must fit in a `u32`"),
                },
                other => errors.spanned(other, "expected an integer literal, e.g. `version = 1`"),
            },
            "crate" => match value {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }) => match s.parse::<syn::Path>() {
                    Ok(p) => args.krate = Some(p),
                    Err(_) => errors.spanned(s, "expected a path, e.g. `crate = \"::mw::rpc\"`"),
                },
                other => errors.spanned(
                    other,
                    "expected a string literal, e.g. `crate = \"::mw::rpc\"`",
                ),
            },
            _ => unreachable!(),
        }
    }
    args
}

fn unknown_service_arg(path: &syn::Path) -> String {
    format!(
        "unknown #[service] argument `{}`; expected `name`, `version` or `crate`",
        path.to_token_stream().to_string().replace(' ', "")
    )
}

fn example_value(key: &str) -> &'static str {
    match key {
        "name" => "\"..\"",
        "version" => "1",
        _ => "\"::mw::rpc\"",
    }
}

// ---------------------------------------------------------------------------
// The trait.

fn parse_trait(args: ServiceArgs, item: &ItemTrait, errors: &mut Errors) -> Service {
    if let Some(u) = &item.unsafety {
        errors.spanned(u, "a #[service] trait must not be `unsafe`");
    }
    if let Some(a) = &item.auto_token {
        errors.spanned(a, "a #[service] trait must not be an `auto` trait");
    }
    if !item.generics.params.is_empty() {
        errors.spanned(
            &item.generics,
            "a #[service] trait must not have generic parameters or lifetimes",
        );
    }
    if let Some(w) = &item.generics.where_clause {
        errors.spanned(w, "a #[service] trait must not have a where-clause");
    }
    for bound in &item.supertraits {
        if let syn::TypeParamBound::Lifetime(l) = bound {
            if l.ident != "static" {
                errors.spanned(
                    l,
                    "a #[service] trait must not have lifetime bounds other than 'static",
                );
            }
        }
    }

    let mut methods = Vec::new();
    let mut position = 0u32;
    for it in &item.items {
        match it {
            TraitItem::Fn(f) => {
                position += 1;
                if let Some(m) = parse_method(position, f, errors) {
                    methods.push(m);
                }
            }
            TraitItem::Const(c) => {
                let (k, i) = (&c.const_token, &c.ident);
                errors.spanned(
                    quote!(#k #i),
                    "a #[service] trait may only contain `async fn` methods",
                )
            }
            TraitItem::Type(t) => {
                let (k, i) = (&t.type_token, &t.ident);
                errors.spanned(
                    quote!(#k #i),
                    "a #[service] trait may only contain `async fn` methods",
                )
            }
            other => errors.spanned(
                other,
                "a #[service] trait may only contain `async fn` methods",
            ),
        }
    }

    check_ids(&methods, errors);
    check_names(&methods, errors);

    Service {
        attrs: item.attrs.clone(),
        vis: item.vis.clone(),
        ident: item.ident.clone(),
        supertraits: item.supertraits.iter().cloned().collect(),
        name: args.name.unwrap_or_else(|| item.ident.to_string()),
        version: args.version.unwrap_or(1),
        krate: args.krate,
        methods,
    }
}

/// Method numbers must be unique; report on the second occurrence.
fn check_ids(methods: &[Method], errors: &mut Errors) {
    let mut seen: HashMap<u32, &Method> = HashMap::new();
    for m in methods {
        if let Some(first) = seen.get(&m.id) {
            errors.at(
                m.id_span,
                format!(
                    "duplicate method number {} (already used by `{}`); give one of them a different #[method(id = ..)]",
                    m.id,
                    first.name()
                ),
            );
        } else {
            seen.insert(m.id, m);
        }
    }
}

/// Generated names must not collide: enum variants, client methods.
fn check_names(methods: &[Method], errors: &mut Errors) {
    let mut variants: HashMap<String, &Method> = HashMap::new();
    for m in methods {
        let v = m.variant_name();
        if let Some(first) = variants.get(&v) {
            errors.spanned(
                &m.ident,
                format!(
                    "method `{}` maps to the same enum variant `{v}` as `{}`",
                    m.name(),
                    first.name()
                ),
            );
        } else {
            variants.insert(v, m);
        }
    }

    // Names of client methods: every method, plus `start_<m>` for request/response.
    let mut client: HashMap<String, &Method> = HashMap::new();
    for m in methods {
        let name = m.name();
        if CLIENT_RESERVED.contains(&name.as_str()) {
            errors.spanned(
                &m.ident,
                format!(
                    "method name `{name}` clashes with the generated client's own `{name}` method"
                ),
            );
        }
        client.insert(name, m);
    }
    for m in methods {
        if has_start(m) {
            let start = format!("start_{}", m.name());
            if let Some(other) = client.get(&start) {
                errors.spanned(
                    &other.ident,
                    format!(
                        "method name `{start}` clashes with the generated deferred-call method for `{}`",
                        m.name()
                    ),
                );
            }
        }
    }
}

/// Whether the client gets a `start_<m>` (deferred synchronous) variant.
pub fn has_start(m: &Method) -> bool {
    matches!(m.kind, MethodKind::Unary | MethodKind::Fallible { .. })
}

// ---------------------------------------------------------------------------
// One method.

/// Helper attributes found on a method.
#[derive(Default)]
struct MethodAttrs {
    user: Vec<Attribute>,
    oneway: Option<(Ack, Span)>,
    id: Option<(u32, Span)>,
}

fn parse_method_attrs(attrs: &[Attribute], errors: &mut Errors) -> MethodAttrs {
    let mut out = MethodAttrs::default();
    for attr in attrs {
        if attr.path().is_ident(ONEWAY) {
            if out.oneway.is_some() {
                errors.spanned(attr, "duplicate #[oneway] attribute");
                continue;
            }
            let ack = match &attr.meta {
                Meta::Path(_) => Some(Ack::None),
                Meta::List(list) => match list.parse_args::<syn::Ident>() {
                    Ok(i) if i == "receipt" => Some(Ack::Receipt),
                    Ok(i) if i == "delivery" => Some(Ack::Delivery),
                    Ok(i) if i == "none" => Some(Ack::None),
                    Ok(i) => {
                        errors.spanned(
                            &i,
                            format!("unknown acknowledgement `{i}`; expected `receipt` or `delivery` (or plain #[oneway] for none)"),
                        );
                        None
                    }
                    Err(_) => {
                        errors.spanned(
                            &list.tokens,
                            "expected `receipt` or `delivery`, e.g. #[oneway(receipt)]",
                        );
                        None
                    }
                },
                Meta::NameValue(_) => {
                    errors.spanned(
                        attr,
                        "expected #[oneway], #[oneway(receipt)] or #[oneway(delivery)]",
                    );
                    None
                }
            };
            // Even on error, remember that the method is oneway so we don't
            // report follow-up errors that assume it is not.
            out.oneway = Some((ack.unwrap_or(Ack::None), attr.span()));
        } else if attr.path().is_ident(METHOD) {
            let list = match &attr.meta {
                Meta::List(list) => list,
                _ => {
                    errors.spanned(attr, "expected #[method(id = N)]");
                    continue;
                }
            };
            let metas = match list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
            {
                Ok(m) => m,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            for meta in metas {
                if !meta.path().is_ident("id") {
                    errors.spanned(
                        meta.path(),
                        format!(
                            "unknown #[method] argument `{}`; expected `id`",
                            meta.path().to_token_stream().to_string().replace(' ', "")
                        ),
                    );
                    continue;
                }
                let lit = match &meta {
                    Meta::NameValue(syn::MetaNameValue {
                        value:
                            Expr::Lit(ExprLit {
                                lit: Lit::Int(i), ..
                            }),
                        ..
                    }) => i,
                    Meta::NameValue(nv) => {
                        errors.spanned(
                            &nv.value,
                            "expected an integer literal, e.g. #[method(id = 7)]",
                        );
                        continue;
                    }
                    other => {
                        errors.spanned(other, "expected #[method(id = N)]");
                        continue;
                    }
                };
                if out.id.is_some() {
                    errors.spanned(&meta, "duplicate `id` for this method");
                    continue;
                }
                match lit.base10_parse::<u32>() {
                    Ok(v) => out.id = Some((v, lit.span())),
                    Err(_) => errors.spanned(lit, "method number must fit in a `u32`"),
                }
            }
        } else {
            out.user.push(attr.clone());
        }
    }
    out
}

fn parse_method(position: u32, f: &TraitItemFn, errors: &mut Errors) -> Option<Method> {
    let before = errors_count(errors);
    let sig = &f.sig;
    let attrs = parse_method_attrs(&f.attrs, errors);
    check_method_shape(f, errors);
    let args = parse_method_args(sig, errors);
    let (output, kind) = parse_output(sig, attrs.oneway, errors);
    if errors_count(errors) != before {
        return None;
    }
    let (id, id_span) = attrs.id.unwrap_or((position, sig.ident.span()));
    Some(Method {
        attrs: attrs.user,
        ident: sig.ident.clone(),
        fn_token: sig.fn_token,
        id,
        id_span,
        args,
        output,
        kind,
    })
}

/// A service method is a plain `async fn` declaration: no qualifiers, generics, where
/// clause or default body.
fn check_method_shape(f: &TraitItemFn, errors: &mut Errors) {
    let sig = &f.sig;
    if sig.asyncness.is_none() {
        let (k, i) = (&sig.fn_token, &sig.ident);
        errors.spanned(
            quote!(#k #i),
            format!("service methods must be `async fn`: write `async fn {i}`"),
        );
    }
    if let Some(c) = &sig.constness {
        errors.spanned(c, "service methods must not be `const`");
    }
    if let Some(u) = &sig.unsafety {
        errors.spanned(u, "service methods must not be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(abi, "service methods must not have an `extern` ABI");
    }
    if let Some(v) = &sig.variadic {
        errors.spanned(v, "service methods must not be variadic");
    }
    if !sig.generics.params.is_empty() {
        errors.spanned(
            &sig.generics,
            "service methods must not have generic parameters or lifetimes",
        );
    }
    if let Some(w) = &sig.generics.where_clause {
        errors.spanned(w, "service methods must not have a where-clause");
    }
    if let Some(body) = &f.default {
        errors.spanned(
            body,
            "service methods must not have a default body; implement the method in the `impl` of the trait",
        );
    }
}

/// The receiver (exactly `&self`) and the arguments (plain identifiers of supported types).
fn parse_method_args(sig: &Signature, errors: &mut Errors) -> Vec<Arg> {
    let mut inputs = sig.inputs.iter();
    match sig.inputs.first() {
        Some(FnArg::Receiver(r)) => {
            inputs.next();
            check_receiver(r, errors);
        }
        _ => errors.at(
            sig.paren_token.span.join(),
            "service methods must take `&self` as their first parameter",
        ),
    }

    // Arguments.
    let mut args = Vec::new();
    for input in inputs {
        let pt = match input {
            FnArg::Typed(pt) => pt,
            FnArg::Receiver(r) => {
                errors.spanned(r, "unexpected receiver");
                continue;
            }
        };
        let ident = match &*pt.pat {
            Pat::Ident(pi)
                if pi.by_ref.is_none() && pi.mutability.is_none() && pi.subpat.is_none() =>
            {
                Some(pi.ident.clone())
            }
            other => {
                errors.spanned(
                    other,
                    "service method arguments must be plain identifiers, e.g. `n: u64`",
                );
                None
            }
        };
        check_type(&pt.ty, TypePosition::Argument, errors);
        if let Some(ident) = ident {
            args.push(Arg {
                attrs: pt.attrs.clone(),
                ident,
                ty: (*pt.ty).clone(),
            });
        }
    }
    args
}

/// The return type, and the method kind it and `#[oneway]` make together.
fn parse_output(
    sig: &Signature,
    oneway: Option<(Ack, Span)>,
    errors: &mut Errors,
) -> (Type, MethodKind) {
    let output: Type = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => {
            check_type(ty, TypePosition::Return, errors);
            (**ty).clone()
        }
    };
    let stream_item = streaming_item(&output, errors);
    let kind = match (oneway, stream_item) {
        (Some(_), Some(_)) => {
            errors.spanned(
                &output,
                "#[oneway] methods cannot stream; remove #[oneway] or return `()`",
            );
            MethodKind::Unary
        }
        (Some((ack, _)), None) => {
            if !is_unit(&output) {
                errors.spanned(
                    &output,
                    "#[oneway] methods must return `()`: there is no response to carry a value",
                );
            }
            MethodKind::Oneway(ack)
        }
        (None, Some(item)) => MethodKind::Stream { item },
        (None, None) => match fallible_parts(&output) {
            Some((ok, err)) => MethodKind::Fallible { ok, err },
            None => MethodKind::Unary,
        },
    };
    (output, kind)
}

fn check_receiver(r: &syn::Receiver, errors: &mut Errors) {
    if r.colon_token.is_some() {
        errors.spanned(
            r,
            "service methods must take `&self` (typed `self: ..` receivers are not supported)",
        );
        return;
    }
    match &r.reference {
        None => errors.spanned(r, "service methods must take `&self`, not `self` by value"),
        Some((_, lifetime)) => {
            if r.mutability.is_some() {
                errors.spanned(
                    r,
                    "service methods must take `&self`, not `&mut self`: calls may run concurrently; use interior mutability",
                );
            } else if let Some(lt) = lifetime {
                errors.spanned(
                    lt,
                    "service methods must take plain `&self` without a lifetime",
                );
            }
        }
    }
}

fn errors_count(errors: &Errors) -> usize {
    errors
        .0
        .as_ref()
        .map_or(0, |e| e.clone().into_iter().count())
}

/// `()` (possibly parenthesized).
fn is_unit(ty: &Type) -> bool {
    match ty {
        Type::Tuple(t) => t.elems.is_empty(),
        Type::Paren(p) => is_unit(&p.elem),
        Type::Group(g) => is_unit(&g.elem),
        _ => false,
    }
}

fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        Type::Paren(p) => last_segment(&p.elem),
        Type::Group(g) => last_segment(&g.elem),
        _ => None,
    }
}

fn type_args(seg: &syn::PathSegment) -> Vec<&Type> {
    match &seg.arguments {
        PathArguments::AngleBracketed(a) => a
            .args
            .iter()
            .filter_map(|g| match g {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `Streaming<T>` (last path segment) -> `Some(T)`; reports `Streaming`
/// without exactly one type argument.
fn streaming_item(ty: &Type, errors: &mut Errors) -> Option<Type> {
    let seg = last_segment(ty)?;
    if seg.ident != "Streaming" {
        return None;
    }
    let args = type_args(seg);
    let all = match &seg.arguments {
        PathArguments::AngleBracketed(a) => a.args.len(),
        _ => 0,
    };
    if args.len() == 1 && all == 1 {
        Some(args[0].clone())
    } else {
        errors.spanned(
            ty,
            "streaming methods must return `Streaming<T>` with the item type `T`",
        );
        None
    }
}

/// `Result<T, E>` (last path segment, exactly two type arguments) -> `(T, E)`.
pub fn fallible_parts(ty: &Type) -> Option<(Type, Type)> {
    let seg = last_segment(ty)?;
    if seg.ident != "Result" {
        return None;
    }
    let all = match &seg.arguments {
        PathArguments::AngleBracketed(a) => a.args.len(),
        _ => 0,
    };
    match type_args(seg).as_slice() {
        [ok, err] if all == 2 => Some(((*ok).clone(), (*err).clone())),
        _ => None,
    }
}

#[derive(Clone, Copy)]
enum TypePosition {
    Argument,
    Return,
}

/// Reject borrowed types (references, lifetimes other than 'static) and
/// `impl Trait` anywhere inside an argument or return type.
fn check_type(ty: &Type, pos: TypePosition, errors: &mut Errors) {
    struct Checker<'a> {
        pos: TypePosition,
        errors: &'a mut Errors,
    }
    impl Checker<'_> {
        fn what(&self) -> &'static str {
            match self.pos {
                TypePosition::Argument => "argument",
                TypePosition::Return => "return",
            }
        }
    }
    impl<'ast> Visit<'ast> for Checker<'_> {
        fn visit_type_reference(&mut self, r: &'ast syn::TypeReference) {
            let msg = format!(
                "borrowed types are not allowed in service {} types: values cross the network; use an owned type (e.g. `String` for `&str`, `Vec<T>` for `&[T]`)",
                self.what()
            );
            self.errors.spanned(r, msg);
            // Don't descend: one error per reference is enough.
        }
        fn visit_lifetime(&mut self, l: &'ast syn::Lifetime) {
            if l.ident != "static" {
                let msg = format!(
                    "lifetimes are not allowed in service {} types: values cross the network; use an owned type",
                    self.what()
                );
                self.errors.spanned(l, msg);
            }
        }
        fn visit_type_impl_trait(&mut self, i: &'ast syn::TypeImplTrait) {
            let msg = match self.pos {
                TypePosition::Argument => "`impl Trait` is not allowed in service method arguments: the argument must be a concrete, deserializable type",
                TypePosition::Return => "`impl Trait` is not allowed in service method return types: the response must be a concrete, serializable type (use `Streaming<T>` for streams)",
            };
            self.errors.spanned(i, msg);
        }
    }
    Checker { pos, errors }.visit_type(ty);
}

#[cfg(test)]
mod tests;
