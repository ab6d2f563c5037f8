fn main() -> std::process::ExitCode {
    palisade_runtime::main()
}
