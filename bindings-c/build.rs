//! Generates the C++ side of the cxx bridge (`atom-fabric-cxx/src/lib.rs.h` and `.cc`) and
//! compiles it into the static library.

fn main() {
    cxx_build::bridge("src/lib.rs")
        .std("c++17")
        .compile("atom_fabric_cxx_bridge");
    println!("cargo:rerun-if-changed=src/lib.rs");
}
