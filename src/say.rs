//! Printing that never panics. `println!` panics when stdout is gone (a closed SSH session, a
//! hung-up terminal, `nohup` without a redirect), and a progress line is not worth a training run:
//! these write what they can and drop the rest.

/// Like `println!`, ignoring write errors.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Like `eprintln!`, ignoring write errors.
#[macro_export]
macro_rules! say_err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
