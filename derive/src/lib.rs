//! `#[derive(Module)]` for ember-nn-core (re-exported as
//! `ember_nn_core::nn::Module` with the `derive` feature, on by default).
//!
//! A struct whose fields are layers (or nested derived structs, or tuples of
//! layers) becomes a module, as a PyTorch `nn.Module` subclass does when it
//! assigns layers to attributes. The derive writes everything but
//! `forward`, which is the user's (a method, or a `Forward` impl):
//!
//! - `Module`: parameters named by the field path, as PyTorch's
//!   `state_dict()` names the same class (`hidden.weight`,
//!   `linear_relu_stack.2.bias`; tuple structs use `0`, `1`, ...), the
//!   training mode passed to every field, and `print(model)`'s text
//!   (`MLP(\n  (hidden): Linear(...)\n)`);
//! - `Build`: each field built in order with its default initialisation,
//!   or as its `#[module(...)]` attribute says (below);
//! - `Footprint`: the memory constants composed from the fields' in field
//!   order, as for a sequence of them (computed, never written by hand).
//!
//! It does not describe the model's inference layers (`Module::layers`,
//! `Signature`): the fields do not say what `forward` computes (an inline
//! `.relu()`, a field used twice, fields in another order). The deployable
//! file is read off the forward pass itself (`ember_nn_core::deploy::export_f32`),
//! and a firmware loads it as the tuple type `ember export` writes
//! (`model_type.rs`).
//!
//! # Field attributes
//!
//! `#[module(...)]` on a field says how `Build` makes it. The keys:
//!
//! - `skip`: the field is not a layer (a hyper-parameter, a flag). It is
//!   left out of all three impls, and `Build` gives it `Default::default()`
//!   (or the value of `init`, when given too).
//! - `p = EXPR`: a layer with a probability, built with it: for `Dropout`,
//!   `#[module(p = 0.2)]` is PyTorch's `nn.Dropout(p=0.2)` (`Build` calls
//!   `ember_nn_core::nn::BuildWithP::build_with_p(EXPR, mem, rng)`, which
//!   seeds the layer's masks from `rng` as the default build does). `EXPR`
//!   is an `f32`; a value outside `[0, 1)` makes `build` return
//!   `Error::InvalidArgument`. On a type without a probability it does not
//!   compile, with an error that says so.
//! - `init = EXPR`: any field, built by an expression of your own,
//!   evaluated in `Build::build` in field order with `mem: &mut Memory<'_,
//!   B>` and `rng: &mut Rng` in scope. `EXPR` is the field's value
//!   (`LeakyReLU { negative_slope: 0.2 }`) or a `Result` of it whose error
//!   converts into `ember_nn_core::Error` (`Dropout::new(0.2, 7)`,
//!   `Linear::build(mem, rng)`); an error is returned from `build` (the
//!   `ember_nn_core::nn::FieldInit` trait decides, and a value of another type
//!   is a compile error naming both types). The field's type need not
//!   implement `Build`.
//!
//! Any other key is a compile error that lists these. A field is built one
//! way: `p` and `init` together are an error, and so is `p` on a skipped field.
//!
//! `ember_nn_core::nn::FieldInit` has an example with all three.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::{quote, quote_spanned, ToTokens};
use syn::{parse_macro_input, spanned::Spanned, Data, DeriveInput, Index, Member};

/// Derives `Module`, `Build` and `Footprint` for a struct of
/// layers; see the crate documentation.
#[proc_macro_derive(Module, attributes(module))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(|e| e.to_compile_error())
        .into()
}

/// A field of the struct, as the derive sees it.
struct Field {
    member: Member,
    /// The name in parameter paths and in `print(model)`.
    name: String,
    ty: syn::Type,
    skip: bool,
    make: Make,
}

/// How `Build` makes a field.
enum Make {
    /// `<T as Build>::build(mem, rng)`, or `Default::default()` when skipped.
    Default,
    /// `#[module(p = EXPR)]`: `<T as BuildWithP>::build_with_p(EXPR, mem, rng)`.
    P(syn::Expr),
    /// `#[module(init = EXPR)]`: the expression, through `FieldInit`.
    Init(syn::Expr),
}

/// The keys `#[module(...)]` takes, for the error on any other.
const KEYS: &str = "`skip`, `p = <probability>` (Dropout) and `init = <expression>`";

/// A field's `#[module(...)]` settings: whether it is skipped, and how it is built.
fn settings(attrs: &[syn::Attribute]) -> syn::Result<(bool, Make)> {
    let mut skip = false;
    let mut make = Make::Default;
    for a in attrs.iter().filter(|a| a.path().is_ident("module")) {
        a.parse_nested_meta(|m| {
            let key = m
                .path
                .get_ident()
                .map_or_else(|| m.path.to_token_stream().to_string(), |i| i.to_string());
            match key.as_str() {
                "skip" => {
                    skip = true;
                    Ok(())
                }
                "p" | "init" => {
                    if !matches!(make, Make::Default) {
                        return Err(m.error(
                            "a field is built one way: give one of `p = ...` and `init = ...`, once",
                        ));
                    }
                    let e: syn::Expr = m.value()?.parse()?;
                    make = if key == "p" { Make::P(e) } else { Make::Init(e) };
                    Ok(())
                }
                _ => Err(m.error(format!(
                    "unknown `module` attribute `{key}`: the keys are {KEYS}"
                ))),
            }
        })?;
    }
    if let (true, Make::P(e)) = (skip, &make) {
        return Err(syn::Error::new(
            e.span(),
            "`p` sets a layer's probability, and `#[module(skip)]` says the field is no layer; give a skipped field its value with `init = ...`",
        ));
    }
    Ok((skip, make))
}

/// Whether `ty` mentions one of the struct's type parameters `params`.
fn mentions(ty: &syn::Type, params: &[&syn::Ident]) -> bool {
    fn walk(t: Tokens, params: &[&syn::Ident]) -> bool {
        t.into_iter().any(|tt| match tt {
            proc_macro2::TokenTree::Ident(i) => params.iter().any(|p| **p == i),
            proc_macro2::TokenTree::Group(g) => walk(g.stream(), params),
            _ => false,
        })
    }
    walk(ty.to_token_stream(), params)
}

fn fields(input: &DeriveInput) -> syn::Result<Vec<Field>> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            input.span(),
            "#[derive(Module)] is for structs whose fields are layers",
        ));
    };
    let mut out = Vec::new();
    for (i, f) in data.fields.iter().enumerate() {
        let (member, name) = match &f.ident {
            Some(id) => (Member::Named(id.clone()), id.to_string()),
            None => (Member::Unnamed(Index::from(i)), i.to_string()),
        };
        // A raw identifier (`r#type`) is named without its prefix, as Python would.
        let name = name.trim_start_matches("r#").to_string();
        let (skip, make) = settings(&f.attrs)?;
        out.push(Field {
            member,
            name,
            ty: f.ty.clone(),
            skip,
            make,
        });
    }
    Ok(out)
}

fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    let all = fields(input)?;
    let layers: Vec<&Field> = all.iter().filter(|f| !f.skip).collect();
    if layers.is_empty() {
        return Err(syn::Error::new(
            input.span(),
            "#[derive(Module)] needs at least one field that is a layer",
        ));
    }
    if layers.len() > 16 {
        return Err(syn::Error::new(
            input.span(),
            "#[derive(Module)] composes up to 16 layer fields; group some in a nested struct or tuple",
        ));
    }
    let krate = quote!(::ember_nn_core);
    let ident = &input.ident;
    let class = ident.to_string();
    let (impl_g, ty_g, where_g) = input.generics.split_for_impl();
    let preds = where_g.map(|w| w.predicates.iter().cloned().collect::<Vec<_>>());
    let preds = preds.unwrap_or_default();
    let bound = |tr: Tokens| -> Tokens {
        let tys = layers.iter().map(|f| &f.ty);
        quote!(where #(#preds,)* #(#tys: #tr,)*)
    };

    let members: Vec<&Member> = layers.iter().map(|f| &f.member).collect();
    let names: Vec<&String> = layers.iter().map(|f| &f.name).collect();
    let tys: Vec<&syn::Type> = layers.iter().map(|f| &f.ty).collect();

    let module_where = bound(quote!(#krate::nn::Module));
    let module = quote! {
        impl #impl_g #krate::nn::Module for #ident #ty_g #module_where {
            fn visit(
                &self,
                name: &mut #krate::nn::Name,
                f: &mut dyn FnMut(&#krate::nn::ParamInfo<'_>),
            ) {
                #( name.with(#names, |n| #krate::nn::Module::visit(&self.#members, n, f)); )*
            }

            fn visit_buffers(
                &self,
                name: &mut #krate::nn::Name,
                f: &mut dyn FnMut(&#krate::nn::BufferInfo<'_>),
            ) {
                #( name.with(#names, |n| #krate::nn::Module::visit_buffers(&self.#members, n, f)); )*
            }

            fn set_training(&mut self, training: bool) {
                #( #krate::nn::Module::set_training(&mut self.#members, training); )*
            }

            fn fmt_module(
                &self,
                f: &mut ::core::fmt::Formatter<'_>,
                indent: usize,
            ) -> ::core::fmt::Result {
                f.write_str(#class)?;
                f.write_str("(\n")?;
                #(
                    for _ in 0..=indent {
                        f.write_str("  ")?;
                    }
                    f.write_str("(")?;
                    f.write_str(#names)?;
                    f.write_str("): ")?;
                    #krate::nn::Module::fmt_module(&self.#members, f, indent + 1)?;
                    f.write_str("\n")?;
                )*
                for _ in 0..indent {
                    f.write_str("  ")?;
                }
                f.write_str(")")
            }
        }
    };

    // `Build` needs the fields built by default to be `Build`, and those
    // built with `p` to be `BuildWithP` (bounded here only when generic:
    // a concrete type that is not is reported at its attribute); a field
    // built with `init` needs nothing.
    let params: Vec<&syn::Ident> = input.generics.type_params().map(|p| &p.ident).collect();
    let build_bounds = layers.iter().filter_map(|f| {
        let ty = &f.ty;
        match &f.make {
            Make::Default => Some(quote!(#ty: #krate::nn::Build)),
            Make::P(_) if mentions(ty, &params) => Some(quote!(#ty: #krate::nn::BuildWithP)),
            Make::P(_) | Make::Init(_) => None,
        }
    });
    let build_where = quote!(where #(#preds,)* #(#build_bounds,)*);
    let inits = all.iter().map(|f| {
        let m = &f.member;
        let ty = &f.ty;
        match &f.make {
            Make::Default if f.skip => quote!(#m: ::core::default::Default::default()),
            Make::Default => quote!(#m: <#ty as #krate::nn::Build>::build(mem, rng)?),
            Make::P(e) => quote_spanned! {e.span()=>
                #m: <#ty as #krate::nn::BuildWithP>::build_with_p(#e, mem, rng)?
            },
            Make::Init(e) => quote_spanned! {e.span()=>
                #m: #krate::nn::FieldInit::<#ty>::into_field(#e)?
            },
        }
    });
    // (Tuple structs are built with `Self { 0: .., 1: .. }` as well.)
    let build_body = quote!(Ok(Self { #(#inits,)* }));
    let build = quote! {
        impl #impl_g #krate::nn::Build for #ident #ty_g #build_where {
            fn build<B: #krate::backend::Backend>(
                mem: &mut #krate::Memory<'_, B>,
                rng: &mut #krate::Rng,
            ) -> #krate::Result<Self> {
                #build_body
            }
        }
    };

    // The constants of the fields as a sequence: the tuple's.
    let seq = quote!((#(#tys,)*));
    let footprint_where = bound(quote!(#krate::nn::Footprint));
    let footprint = quote! {
        impl #impl_g #krate::nn::Footprint for #ident #ty_g #footprint_where {
            const PARAMS: usize = <#seq as #krate::nn::Footprint>::PARAMS;
            const BUFFERS: usize = <#seq as #krate::nn::Footprint>::BUFFERS;
            const NODES: usize = <#seq as #krate::nn::Footprint>::NODES;
            const IN_FEATURES: ::core::option::Option<usize> =
                <#seq as #krate::nn::Footprint>::IN_FEATURES;
            const OUT_FEATURES: ::core::option::Option<usize> =
                <#seq as #krate::nn::Footprint>::OUT_FEATURES;
            const SCRATCH_FIXED: usize = <#seq as #krate::nn::Footprint>::SCRATCH_FIXED;
            const SCRATCH_PER_FEATURE: usize =
                <#seq as #krate::nn::Footprint>::SCRATCH_PER_FEATURE;
        }
    };

    Ok(quote! {
        #module
        #build
        #footprint
    })
}
