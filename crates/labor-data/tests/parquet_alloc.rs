//! A Parquet file whose page headers declare impossible sizes (found by fuzzing: a 2.7 KB file
//! made the `parquet` crate reserve ~4.5 GB for a dictionary page of billions of values) is
//! refused before anything is reserved for it. A counting
//! allocator records the largest single allocation while each reader runs; this file holds one
//! test so no other test's allocations are counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use labor_data::formats::parquet::read_panel_parquet;
use labor_data::{BuildOptions, Taxonomy};

struct Counting;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn a_file_whose_pages_declare_gigabytes_is_refused_without_reserving_them() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/regressions/parquet/page-header-huge-allocation.parquet"
    );
    let bytes = bytes::Bytes::from(std::fs::read(path).unwrap());
    assert!(bytes.len() < 4096);
    let limit = 16 << 20;
    type Reader = Box<dyn Fn() -> String>;
    let readers: Vec<(&str, Reader)> = vec![
        ("panel", {
            let b = bytes.clone();
            Box::new(move || {
                let e = read_panel_parquet(
                    b.clone(),
                    Taxonomy::embedded_default(),
                    BuildOptions::default(),
                )
                .unwrap_err();
                format!("{:?}", e.0)
            })
        }),
        ("predictions", {
            let b = bytes.clone();
            Box::new(move || labor_data::predictions::read_predictions(b.clone()).unwrap_err())
        }),
        ("logp", {
            let b = bytes.clone();
            Box::new(move || labor_data::predictions::read_logp(b.clone()).unwrap_err())
        }),
    ];
    for (name, read) in readers {
        LARGEST.store(0, Ordering::Relaxed);
        let e = read();
        let largest = LARGEST.load(Ordering::Relaxed);
        assert!(
            e.contains("Parquet data: row group 0, column 2, page"),
            "{name}: the error should name the page: {e}"
        );
        assert!(
            largest < limit,
            "{name}: a single allocation of {largest} bytes while reading a {}-byte file",
            bytes.len()
        );
    }
}
