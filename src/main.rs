use std::process::ExitCode;

fn main() -> ExitCode {
    hostrouter::cli::main()
}
