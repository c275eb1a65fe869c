//! Binance's REST conventions (pure; called on the API's and the simulator's HTTP connection
//! threads): the error body `{"code":C,"msg":"…"}`, and the checks of query parameters with
//! Binance's codes and messages, in the order Binance applies them.

use std::str::FromStr;

use super::http::Request;

/// `{"code":C,"msg":"…"}`.
pub fn error_body(code: i32, msg: &str) -> String {
    format!(r#"{{"code":{code},"msg":{}}}"#, super::json_string(msg))
}

/// A refused request: Binance's error code and message (each server answers it with HTTP 400
/// and [`error_body`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    pub code: i32,
    pub msg: String,
}

impl RequestError {
    /// A refusal with `code` and `msg`.
    pub fn new(code: i32, msg: impl Into<String>) -> RequestError {
        RequestError {
            code,
            msg: msg.into(),
        }
    }
}

/// Parameter `name`, which must be present and non-empty (-1102).
///
/// # Errors
/// -1102 when it is missing or empty.
pub fn mandatory<'a>(request: &'a Request, name: &str) -> Result<&'a str, RequestError> {
    match request.param(name) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(RequestError::new(
            -1102,
            format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed."),
        )),
    }
}

/// Parameter `name` as a `T`; `None` when it is missing or empty.
///
/// # Errors
/// -1100 when it does not parse.
pub fn optional<T: FromStr>(request: &Request, name: &str) -> Result<Option<T>, RequestError> {
    match request.param(name) {
        None | Some("") => Ok(None),
        Some(value) => value.parse().map(Some).map_err(|_| {
            RequestError::new(
                -1100,
                format!("Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."),
            )
        }),
    }
}

/// `limit` (a `T`, `default` when absent), from 1 to `max`.
///
/// # Errors
/// -1100 when it does not parse as a `T`, -1130 when it is 0 or over `max`.
pub fn limit<T>(request: &Request, default: T, max: T) -> Result<T, RequestError>
where
    T: FromStr + PartialOrd + Default,
{
    let limit = optional::<T>(request, "limit")?.unwrap_or(default);
    if limit == T::default() || limit > max {
        return Err(RequestError::new(
            -1130,
            "Data sent for parameter 'limit' is not valid.",
        ));
    }
    Ok(limit)
}

/// `startTime` and `endTime` (ms), each optional; the start not after the end.
///
/// # Errors
/// -1100 when one does not parse, -1023 when the start is after the end.
pub fn time_range(request: &Request) -> Result<(Option<i64>, Option<i64>), RequestError> {
    let start = optional::<i64>(request, "startTime")?;
    let end = optional::<i64>(request, "endTime")?;
    if let (Some(start), Some(end)) = (start, end)
        && start > end
    {
        return Err(RequestError::new(
            -1023,
            "Start time is greater than end time.",
        ));
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_escape_the_message() {
        assert_eq!(
            error_body(-1121, "Invalid symbol."),
            r#"{"code":-1121,"msg":"Invalid symbol."}"#
        );
        assert_eq!(error_body(2, "a\"b"), r#"{"code":2,"msg":"a\"b"}"#);
        assert_eq!(
            error_body(-1000, "x"),
            serde_json::json!({ "code": -1000, "msg": "x" }).to_string()
        );
    }

    #[test]
    fn parameters_are_checked_with_binances_codes() {
        let code = |e: RequestError| e.code;
        let r = Request::get("/k?symbol=&limit=0&startTime=5&endTime=4&x=1a");
        assert_eq!(mandatory(&r, "symbol").map_err(code), Err(-1102));
        assert_eq!(mandatory(&r, "x"), Ok("1a"));
        assert_eq!(optional::<i64>(&r, "x").map_err(code), Err(-1100));
        assert_eq!(optional::<i64>(&r, "symbol"), Ok(None));
        assert_eq!(limit(&r, 500u32, 1500).map_err(code), Err(-1130));
        assert_eq!(time_range(&r).map_err(code), Err(-1023));
        let r = Request::get("/k?limit=5000000000&startTime=4");
        assert_eq!(limit(&r, 500u32, 1500).map_err(code), Err(-1100));
        assert_eq!(limit(&r, 500usize, 1500).map_err(code), Err(-1130));
        assert_eq!(time_range(&r), Ok((Some(4), None)));
        assert_eq!(limit(&Request::get("/k"), 500u32, 1500), Ok(500));
    }
}
