//! Deterministic simulation harness for zraft. Under `--cfg madsim` (see `cargo sim-test`),
//! the unchanged server runs as madsim nodes on a simulated network and clock, with storage
//! on the simulated disk. The history model, checkers and scenario files build anywhere;
//! `workload`, `nemesis` and `run` exist only under madsim.

pub mod checker;
pub mod config;
pub mod history;
pub mod model;
#[cfg(madsim)]
pub mod nemesis;
pub mod page;
#[cfg(madsim)]
pub mod run;
pub mod scenario;
#[cfg(madsim)]
pub mod shrink;
pub mod sweep;
#[cfg(madsim)]
pub mod workload;

/// The harness's allocator (the binary, its tests and its benches): allocation is not part
/// of what a seed decides, and glibc's malloc and free were a fifth of a simulation's time.
#[cfg(madsim)]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Name of the server crate this harness drives.
pub fn server_crate() -> &'static str {
    zraft::NAME
}

#[cfg(test)]
mod tests {
    #[test]
    fn links_against_the_server() {
        assert_eq!(super::server_crate(), "zraft");
    }
}
