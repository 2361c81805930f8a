//! The method registries: one table per subcommand, from which the `--method` names, their help,
//! every method's flags (flattened into the command line and into the saved config) and the
//! builders all come. Adding a method is one line here (see `docs/architecture.md`).

use crate::error::Result;
use crate::methods::options::{PosttrainContext, TrainContext, settings_of};
use crate::methods::plugin::{Method, Plugin};
use crate::methods::{acdc, baselines, dense, dnw, dynamic, fcpts, gmp, magnitude, str};
use crate::methods::{grasp, han, l0, lottery, sensitivity, snip, wanda};

/// Declares a registry from its table. For each line `Variant = "name", field: Plugin, "help";`
/// (optionally `=> constructor` when one plugin type serves several names) it generates:
/// - a variant of the `--method` value enum (clap `ValueEnum`, serialised by its name);
/// - a field `field` of the options struct holding the plugin's typed options, flattened into
///   the command line and into the config's JSON (so the saved config stays one flat map of
///   settings, readable by older and newer versions alike);
/// - the builder `Name::build(options, context)` and `Name::settings()`, the settings the
///   method reads (its own options' fields, then the shared ones it names).
macro_rules! registry {
    (@ctor [] $Plugin:ty, $Ctx:ty) => { <$Plugin as Plugin<$Ctx>>::build };
    (@ctor [$ctor:path] $Plugin:ty, $Ctx:ty) => { $ctor };
    (
        $(#[$name_meta:meta])* enum $Name:ident;
        $(#[$options_meta:meta])* struct $Options:ident;
        context $Ctx:ty;
        $( $Variant:ident = $cli:literal, $field:ident: $Plugin:ty $(=> $ctor:path)?, $help:literal; )+
    ) => {
        $(#[$name_meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash,
            clap::ValueEnum, serde::Serialize, serde::Deserialize,
        )]
        pub enum $Name {
            $( #[value(name = $cli, help = $help)] #[serde(rename = $cli)] $Variant, )+
        }

        $(#[$options_meta])*
        #[derive(Clone, Debug, Default, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
        #[group(skip)]
        #[serde(default)]
        pub struct $Options {
            $(
                #[command(flatten)]
                #[serde(flatten)]
                pub $field: <$Plugin as Plugin<$Ctx>>::Options,
            )+
        }

        impl $Name {
            /// Every method of the registry, in table order.
            pub const ALL: &'static [$Name] = &[$($Name::$Variant),+];

            /// The `--method` name.
            pub fn as_str(self) -> &'static str {
                match self { $($Name::$Variant => $cli,)+ }
            }

            /// The one-line help.
            pub fn help(self) -> &'static str {
                match self { $($Name::$Variant => $help,)+ }
            }

            /// Builds the method from its options and the run's context.
            pub fn build(self, options: &$Options, context: &$Ctx) -> Result<Box<dyn Method>> {
                match self {
                    $($Name::$Variant => {
                        let ctor = registry!(@ctor [$($ctor)?] $Plugin, $Ctx);
                        Ok(Box::new(ctor(&options.$field, context)?))
                    })+
                }
            }

            /// The settings the method reads: its own options' fields, then the shared ones.
            pub fn settings(self) -> Vec<String> {
                match self {
                    $($Name::$Variant => {
                        let mut own = settings_of::<<$Plugin as Plugin<$Ctx>>::Options>();
                        own.extend(
                            <$Plugin as Plugin<$Ctx>>::SHARED.iter().map(|s| s.to_string()),
                        );
                        own
                    })+
                }
            }
        }

        impl std::str::FromStr for $Name {
            type Err = crate::error::Error;

            /// The method named `name` (its `--method` name).
            fn from_str(name: &str) -> Result<Self> {
                <$Name as clap::ValueEnum>::from_str(name, false).map_err(|_| {
                    let names: Vec<&str> = $Name::ALL.iter().map(|m| m.as_str()).collect();
                    crate::error::Error::invalid(format!(
                        "unknown --method `{name}` (expected one of: {})",
                        names.join(", ")
                    ))
                })
            }
        }

        impl std::fmt::Display for $Name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

registry! {
    /// `sparsegrad train --method`.
    enum TrainMethod;
    /// The options of every training method (each method reads its own; see `settings`).
    struct TrainMethodOptions;
    context TrainContext;
    Dense = "dense", dense: dense::Dense, "plain dense training";
    Str = "str", str: str::Str, "STR: learned soft thresholds (Kusupati et al. 2020)";
    Gmp = "gmp", gmp: gmp::Gmp, "gradual magnitude pruning, cubic schedule (Zhu & Gupta 2017)";
    Magnitude = "magnitude", magnitude: magnitude::Magnitude, "train dense, prune once by magnitude, fine-tune";
    Han = "han", han: han::Han, "prune |w| < q std per layer, retrain at reduced lr, iterate (Han et al. 2015)";
    Lottery = "lottery", lottery: lottery::Lottery, "lottery tickets: iterative magnitude pruning with rewinding (Frankle & Carbin 2019)";
    Snip = "snip", snip: snip::Snip, "SNIP: prune at init by connection sensitivity |g w| (Lee et al. 2019)";
    Grasp = "grasp", grasp: grasp::Grasp, "GraSP: prune at init by gradient flow -w (H g) (Wang et al. 2020)";
    Rigl = "rigl", rigl: dynamic::DynamicSparse<dynamic::RiglOptions>, "RigL: random sparse start, drop by |w| and grow by |gradient| (Evci et al. 2020)";
    Set = "set", set: dynamic::DynamicSparse<dynamic::SetOptions>, "SET: random sparse start, drop by |w| and grow at random (Mocanu et al. 2018)";
    Acdc = "acdc", acdc: acdc::Acdc, "AC/DC: dense warm-up, alternating magnitude-sparse and dense phases, ending sparse (Peste et al. 2021)";
    Dnw = "dnw", dnw: dnw::Dnw, "DNW: forward top-k of |w|, gradient to every weight (Wortsman et al. 2019)";
    Static = "static", static_mask: dynamic::DynamicSparse<dynamic::StaticOptions>, "a fixed random mask at the --distribution allocation (control of RigL and SET)";
    Sensitivity = "sensitivity", sensitivity: sensitivity::Sensitivity, "sensitivity-driven decay of weights the output is insensitive to, then thresholding (Tartaglione et al. 2018)";
    L0 = "l0", l0: l0::L0, "L0: hard-concrete gates per neuron / channel, expected-L0 penalty (Louizos et al. 2018)";
}

registry! {
    /// `sparsegrad posttrain --method`.
    enum PosttrainMethod;
    /// The options of every post-training method.
    struct PosttrainMethodOptions;
    context PosttrainContext;
    Fcpts = "fcpts", fcpts: fcpts::Fcpts, "FCPTS: learned per-layer thresholds to an exact target (Gong et al. 2024)";
    MagnitudeUniform = "magnitude-uniform", magnitude_uniform: baselines::Baseline => baselines::Baseline::uniform, "magnitude, the same sparsity in every layer";
    MagnitudeErk = "magnitude-erk", magnitude_erk: baselines::Baseline => baselines::Baseline::erk, "magnitude, Erdos-Renyi-kernel allocation";
    MagnitudeGlobal = "magnitude-global", magnitude_global: baselines::Baseline => baselines::Baseline::global, "magnitude, one threshold on |w| over all layers";
    MagnitudeL2norm = "magnitude-l2norm", magnitude_l2norm: baselines::Baseline => baselines::Baseline::l2norm, "magnitude, one threshold on |w| / ||W_l||";
    Lamp = "lamp", lamp: baselines::Baseline => baselines::Baseline::lamp, "LAMP scores, global top-k (Lee et al. 2021)";
    Wanda = "wanda", wanda: wanda::Wanda, "Wanda: |W_ij| ||X_j|| on the calibration inputs, per output row (Sun et al. 2023)";
}
