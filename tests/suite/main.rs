//! The integration tests, compiled as one binary (one link instead of thirty: a faster CI).
//! Each module is one area; `common`, `cli_support` and `methods_support` are shared helpers.

mod alloc;
mod budget;
mod checkpoint;
mod cli;
mod cli_support;
mod common;
mod data_cifar;
mod engine;
mod fuzz_formats;
mod fuzz_json;
mod fuzz_parsers;
mod fuzz_support;
mod grad_conv;
mod grad_elementwise;
mod grad_loss;
mod grad_norm;
mod grad_pool;
mod grad_recurrent;
mod grad_reduce;
mod grad_shape;
mod kinks;
mod methods_cli;
mod methods_gmp;
mod methods_ops;
mod methods_str;
mod methods_structured;
mod methods_support;
mod models;
mod models_size;
mod optim;
mod posttrain;
mod schedule;
mod sparsity_ops;
mod sparsity_transforms;
mod train_run;
