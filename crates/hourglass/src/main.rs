//! `hourglass`: the server (`serve`) and the client commands, in one binary.

mod audit_cmd;
mod campaign_cmd;
mod cli;
mod identity_cmd;
mod mcp;
mod policy_cmd;
mod serve;

fn main() -> std::process::ExitCode {
    cli::main()
}
