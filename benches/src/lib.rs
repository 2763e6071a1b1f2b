//! Shared helpers for atom-fabric benchmarks.
