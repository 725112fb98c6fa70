//! Value parsers shared by every command's flags, spelled as the reference's scripts parse them.

/// The reference's `bool_flag`: on/true/1 and off/false/0.
pub fn bool_flag(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        _ => Err(format!("invalid value for a boolean flag: {s} (use true or false)")),
    }
}
