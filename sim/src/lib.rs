//! Deterministic simulation harness for zraft. Under `--cfg madsim` (see `cargo sim-test`),
//! the unchanged server runs as madsim nodes on a simulated network and clock, with storage
//! on the simulated disk; the harness proper (nemesis, checkers, scenarios) builds on this.

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
