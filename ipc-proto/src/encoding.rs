//! The two wire encodings of the control channel and their names in `GALA_GOPHER_IPC_ENCODING`.

use std::fmt;
use std::str::FromStr;

use crate::error::ParseEncodingError;

/// How messages are framed on the channel; chosen per probe by the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Each message is a `u32` big-endian length followed by that many bytes of protobuf.
    Proto,
    /// Each message is one `\n`-terminated line of proto3 canonical JSON.
    Json,
}

impl Encoding {
    /// The name used in the environment: `"proto"` or `"json"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Proto => "proto",
            Encoding::Json => "json",
        }
    }
}

impl FromStr for Encoding {
    type Err = ParseEncodingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "proto" => Ok(Encoding::Proto),
            "json" => Ok(Encoding::Json),
            other => Err(ParseEncodingError {
                value: other.to_owned(),
            }),
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for encoding in [Encoding::Proto, Encoding::Json] {
            assert_eq!(encoding.as_str().parse::<Encoding>().unwrap(), encoding);
            assert_eq!(encoding.to_string(), encoding.as_str());
        }
    }

    #[test]
    fn unknown_name_is_rejected() {
        let err = "JSON".parse::<Encoding>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown IPC encoding \"JSON\" (expected \"proto\" or \"json\")"
        );
    }
}
