//! CIFAR-10 and CIFAR-100 (fine and coarse) binary files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsegrad::data::{Cifar100Labels, read_cifar10_file, read_cifar100_file};

mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::as_file("f.bin", data);
    common::check(read_cifar10_file(&path), &path);
    common::check(read_cifar100_file(&path, Cifar100Labels::Fine), &path);
    common::check(read_cifar100_file(&path, Cifar100Labels::Coarse), &path);
});
