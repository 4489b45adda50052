//! `#[derive(Module)]` for ember-core (re-exported as
//! `ember_core::nn::Module` with the `derive` feature, on by default).
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
//! - `Build`: each field built in order with its default initialisation;
//! - `Footprint`: the memory constants composed from the fields' in field
//!   order, as for a sequence of them (computed, never written by hand).
//!
//! It does not describe the model's inference layers (`Module::layers`,
//! `Signature`): the fields do not say what `forward` computes (an inline
//! `.relu()`, a field used twice, fields in another order). The deployable
//! file is read off the forward pass itself (`ember_core::deploy::export_f32`),
//! and a firmware loads it as the tuple type `ember export` writes
//! (`model_type.rs`).
//!
//! A field marked `#[module(skip)]` is not a layer (a hyper-parameter, a
//! flag): it is left out of all three, and `Build` gives it
//! `Default::default()`.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::quote;
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
}

/// Whether `attrs` hold `#[module(skip)]`; any other `#[module(...)]` is an error.
fn skipped(attrs: &[syn::Attribute]) -> syn::Result<bool> {
    let mut skip = false;
    for a in attrs.iter().filter(|a| a.path().is_ident("module")) {
        a.parse_nested_meta(|m| {
            if m.path.is_ident("skip") {
                skip = true;
                Ok(())
            } else {
                Err(m.error("the only `module` attribute is `#[module(skip)]`"))
            }
        })?;
    }
    Ok(skip)
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
        out.push(Field {
            member,
            name,
            ty: f.ty.clone(),
            skip: skipped(&f.attrs)?,
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
    let krate = quote!(::ember_core);
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

    let build_where = bound(quote!(#krate::nn::Build));
    let inits = all.iter().map(|f| {
        let m = &f.member;
        let ty = &f.ty;
        if f.skip {
            quote!(#m: ::core::default::Default::default())
        } else {
            quote!(#m: <#ty as #krate::nn::Build>::build(mem, rng)?)
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
