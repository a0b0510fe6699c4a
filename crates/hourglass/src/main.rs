//! `hourglass`: the server (`serve`) and the client commands, in one binary.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
