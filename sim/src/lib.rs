//! Deterministic simulation harness for zraft. Under `--cfg madsim` (see `cargo sim-test`),
//! the unchanged server runs as madsim nodes on a simulated network and clock, with storage
//! on the simulated disk. This crate holds the history model and the checkers; the cluster,
//! workloads and nemesis run under madsim.

pub mod checker;
pub mod history;
#[cfg(madsim)]
pub mod run;
pub mod scenario;

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
