fn main() -> std::process::ExitCode {
    palisade_probe::agent::main()
}
