// Shared build script for every crate that links libtorch (through tch).
//
// 1. Keep `libtorch_cuda` linked even though no symbol of it is referenced directly: without it
//    the linker's `--as-needed` drops the library and CUDA reads as unavailable on a GPU machine.
// 2. Set an rpath to the libtorch directory found by torch-sys (the PyTorch virtualenv), plus
//    `$ORIGIN/torch-lib` for a binary shipped next to its libraries, so neither the binary nor
//    the tests need LD_LIBRARY_PATH.
pub fn main() {
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch_cuda");
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/torch-lib");
    println!("cargo:rerun-if-changed=../../build/torch_link.rs");
}
