//! The `zraft` command line. The replicated server arrives with the server issue; until then
//! the binary reports what this build contains.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "zraft",
    version,
    about = "A ZooKeeper-compatible coordination service replicated with Raft"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the wire opcodes this build encodes and decodes.
    Opcodes,
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Opcodes) => {
            for op in zraft::jute::OpCode::ALL {
                println!("{:>4} {:?}", op.code(), op);
            }
        }
        None => {
            println!(
                "zraft {}: jute codec and znode tree are built; the server is not yet.",
                env!("CARGO_PKG_VERSION")
            );
            println!("Run `zraft --help` for commands.");
        }
    }
}
