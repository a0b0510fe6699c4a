//! `hourglass`: the server (`serve`) and the client commands, in one binary.

mod cli;
mod identity_cmd;
mod mcp;
mod policy_cmd;
mod serve;

fn main() -> std::process::ExitCode {
    cli::main()
}
