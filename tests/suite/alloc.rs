//! The allocator setting is accepted by glibc (where the program runs on glibc).

#[test]
fn glibc_accepts_the_allocator_settings() {
    let applied = sparsegrad::alloc::tune_allocator();
    assert_eq!(applied, cfg!(all(target_os = "linux", target_env = "gnu")));
}
