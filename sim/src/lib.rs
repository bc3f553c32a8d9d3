//! Deterministic simulation harness for zraft (see the harness issue); for now it only proves
//! that the harness crate links against the server crate.

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
