//! IDX files, raw or gzip (the first bytes decide, as in `read_idx`).
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::as_file("f", data);
    let result = sparsegrad::data::idx::read_idx(&path);
    if let Ok(a) = &result {
        assert_eq!(a.data.len(), a.dims.iter().product::<usize>());
    }
    common::check(result, &path);
});
