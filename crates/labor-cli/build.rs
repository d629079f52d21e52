//! The shared libtorch link settings (build/torch_link.rs), and whether headless Chromium is
//! installed (`cfg(has_chromium)`): the browser checks are reported as ignored, with the reason,
//! where it is not — never as passed.
#[path = "../../build/torch_link.rs"]
mod torch_link;

fn main() {
    torch_link::main();
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-check-cfg=cfg(has_chromium)");
    // Installing the package changes /usr/bin, which re-runs this script.
    println!("cargo:rerun-if-changed=/usr/bin");
    if ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .any(|p| std::path::Path::new(p).exists())
    {
        println!("cargo:rustc-cfg=has_chromium");
    }
}
