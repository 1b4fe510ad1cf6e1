//! The `auditlake` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    auditlake_ingest::allocator::tune();
    auditlake_ingest::cli::main()
}
