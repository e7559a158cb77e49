//! A value to write, read from the JSON an operator gave (a string typed into the dashboard or
//! the command line, or a JSON number or boolean) as the type its resource's model says. A value
//! that does not fit the type is refused with the reason, never guessed at.

use lwm2m_core::content::Value;
use lwm2m_core::content::link::LinkParser;
use serde_json::Value as Json;

use crate::model::ResourceType;

/// A typed value, owned.
#[derive(Clone, Debug, PartialEq)]
pub enum Typed {
    Integer(i64),
    Unsigned(u64),
    Float(f64),
    Boolean(bool),
    String(String),
    Opaque(Vec<u8>),
    ObjLink(u16, u16),
}

impl Typed {
    /// The value as lwm2m-core's encoders take it (Time is an Integer, Corelnk a String).
    pub fn as_value(&self) -> Value<'_> {
        match self {
            Typed::Integer(v) => Value::Integer(*v),
            Typed::Unsigned(v) => Value::Unsigned(*v),
            Typed::Float(v) => Value::Float(*v),
            Typed::Boolean(v) => Value::Boolean(*v),
            Typed::String(s) => Value::String(s),
            Typed::Opaque(b) => Value::Opaque(b),
            Typed::ObjLink(o, i) => Value::ObjLink(*o, *i),
        }
    }
}

/// The text of a JSON scalar as the operator typed it (`"abc"`, `1.5`, `true`).
fn shown(v: &Json) -> String {
    v.to_string()
}

/// The trimmed text of a string, or the JSON text of a number or boolean.
fn text(v: &Json) -> Result<String, String> {
    match v {
        Json::String(s) => Ok(s.trim().to_string()),
        Json::Number(_) | Json::Bool(_) => Ok(v.to_string()),
        Json::Null => Err("no value given".into()),
        Json::Array(_) | Json::Object(_) => Err(format!("{} is a list: give one value", shown(v))),
    }
}

/// `v` as the value of a resource of type `kind`; the error is the reason, for people.
pub fn typed(kind: ResourceType, v: &Json) -> Result<Typed, String> {
    let t = text(v)?;
    Ok(match kind {
        ResourceType::String => match v {
            Json::String(s) => Typed::String(s.clone()),
            _ => Typed::String(t),
        },
        ResourceType::Integer => Typed::Integer(integer(&t, v)?),
        ResourceType::UnsignedInteger => {
            if t.starts_with('-') {
                return Err(format!("{} is negative", shown(v)));
            }
            Typed::Unsigned(
                t.parse()
                    .map_err(|_| whole_number_reason(&t, v, "0 to 18446744073709551615"))?,
            )
        }
        ResourceType::Float => {
            let f: f64 = t
                .parse()
                .map_err(|_| format!("{} is not a number", shown(v)))?;
            if !f.is_finite() {
                return Err(format!("{} is not a finite number", shown(v)));
            }
            Typed::Float(f)
        }
        ResourceType::Boolean => Typed::Boolean(match t.to_ascii_lowercase().as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => {
                return Err(format!(
                    "{} is not a boolean: give true, false, 1 or 0",
                    shown(v)
                ));
            }
        }),
        ResourceType::Opaque => Typed::Opaque(hex(&t).ok_or_else(|| {
            format!(
                "{} is not hex: give the bytes as hex digits, e.g. 00ff",
                shown(v)
            )
        })?),
        ResourceType::Time => Typed::Integer(match t.parse::<i64>() {
            Ok(s) => s,
            Err(_) => rfc3339(&t).ok_or_else(|| {
                format!(
                    "{} is not a time: give seconds since 1970-01-01 or a UTC time such as 2024-05-01T12:00:00Z",
                    shown(v)
                )
            })?,
        }),
        ResourceType::Objlnk => {
            let (o, i) = lwm2m_core::content::text::parse_objlnk(t.as_bytes()).map_err(|_| {
                format!(
                    "{} is not an object link: give object:instance, e.g. 3:0",
                    shown(v)
                )
            })?;
            Typed::ObjLink(o, i)
        }
        ResourceType::Corelnk => {
            if t.is_empty() {
                return Err("no links given: give CoRE links such as </3/0>,</1/0>".into());
            }
            if let Some(Err(e)) = LinkParser::new(&t).find(Result::is_err) {
                return Err(format!(
                    "{} is not CoRE link format ({e}): give links such as </3/0>,</1/0>",
                    shown(v)
                ));
            }
            Typed::String(t)
        }
        ResourceType::None => {
            return Err("it is executable and holds no value: execute it instead".into());
        }
    })
}

/// `v` for a resource without a model: typed by the JSON itself (a string stays a string).
pub fn untyped(v: &Json) -> Result<Typed, String> {
    Ok(match v {
        Json::String(s) => Typed::String(s.clone()),
        Json::Bool(b) => Typed::Boolean(*b),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Typed::Integer(i),
            (None, Some(f)) => Typed::Float(f),
            _ => return Err(format!("{n} is not a number this server can send")),
        },
        other => return Err(text(other).err().unwrap_or_default()),
    })
}

fn whole_number_reason(t: &str, v: &Json, range: &str) -> String {
    if !t.is_empty()
        && t.trim_start_matches('-')
            .chars()
            .all(|c| c.is_ascii_digit())
    {
        format!("{} is out of range ({range})", shown(v))
    } else if t.parse::<f64>().is_ok() {
        format!("{} is not a whole number", shown(v))
    } else {
        format!("{} is not an integer", shown(v))
    }
}

fn integer(t: &str, v: &Json) -> Result<i64, String> {
    t.parse()
        .map_err(|_| whole_number_reason(t, v, "a signed 64-bit integer"))
}

/// Hex digits (an optional `0x`), two per byte.
fn hex(t: &str) -> Option<Vec<u8>> {
    let t = t.strip_prefix("0x").unwrap_or(t);
    if t.len() % 2 != 0 {
        return None;
    }
    (0..t.len())
        .step_by(2)
        .map(|i| t.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// Seconds since 1970 of an RFC 3339 time (`2024-05-01T12:00:00Z`, `...+02:00`, fractions
/// dropped).
fn rfc3339(t: &str) -> Option<i64> {
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.chars().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (date, time) = t.split_once(['T', 't', ' '])?;
    let mut d = date.split('-');
    let (y, mo, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    if d.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&day) {
        return None;
    }
    let (clock, offset) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let at = time.rfind(['+', '-'])?;
        let (c, z) = time.split_at(at);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let (oh, om) = z.get(1..)?.split_once(':')?;
        (c, sign * (num(oh)? * 3600 + num(om)? * 60))
    };
    let clock = clock.split('.').next()?;
    let mut c = clock.split(':');
    let (h, mi, s) = (num(c.next()?)?, num(c.next()?)?, num(c.next()?)?);
    if c.next().is_some() || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s - offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ResourceType as T;
    use serde_json::json;

    #[test]
    fn strings_from_the_dashboard_become_the_resources_type() {
        assert_eq!(typed(T::Integer, &json!(" -42 ")), Ok(Typed::Integer(-42)));
        assert_eq!(typed(T::Integer, &json!(7)), Ok(Typed::Integer(7)));
        assert_eq!(
            typed(T::UnsignedInteger, &json!("600")),
            Ok(Typed::Unsigned(600))
        );
        assert_eq!(typed(T::Float, &json!("21.5")), Ok(Typed::Float(21.5)));
        assert_eq!(typed(T::Float, &json!(3)), Ok(Typed::Float(3.0)));
        assert_eq!(typed(T::Boolean, &json!("TRUE")), Ok(Typed::Boolean(true)));
        assert_eq!(typed(T::Boolean, &json!(0)), Ok(Typed::Boolean(false)));
        assert_eq!(
            typed(T::String, &json!("42")),
            Ok(Typed::String("42".into()))
        );
        assert_eq!(
            typed(T::Opaque, &json!("0x00ff")),
            Ok(Typed::Opaque(vec![0, 255]))
        );
        assert_eq!(typed(T::Objlnk, &json!("3:0")), Ok(Typed::ObjLink(3, 0)));
        assert_eq!(
            typed(T::Time, &json!("1367491215")),
            Ok(Typed::Integer(1_367_491_215))
        );
        assert_eq!(
            typed(T::Time, &json!("2013-05-02T10:40:15Z")),
            Ok(Typed::Integer(1_367_491_215))
        );
        assert_eq!(
            typed(T::Time, &json!("2013-05-02T12:40:15.5+02:00")),
            Ok(Typed::Integer(1_367_491_215))
        );
        assert_eq!(
            typed(T::Corelnk, &json!("</3/0>,</1/0>")),
            Ok(Typed::String("</3/0>,</1/0>".into()))
        );
    }

    #[test]
    fn values_that_do_not_fit_the_type_are_refused_with_the_reason() {
        let cases = [
            (T::Integer, json!("abc"), "\"abc\" is not an integer"),
            (T::Integer, json!("1.5"), "\"1.5\" is not a whole number"),
            (T::Integer, json!(1.5), "1.5 is not a whole number"),
            (T::Integer, json!("99999999999999999999"), "is out of range"),
            (T::UnsignedInteger, json!("-1"), "\"-1\" is negative"),
            (T::Float, json!("warm"), "\"warm\" is not a number"),
            (T::Float, json!("NaN"), "not a finite number"),
            (T::Boolean, json!("yes"), "give true, false, 1 or 0"),
            (T::Opaque, json!("0g"), "is not hex"),
            (T::Opaque, json!("abc"), "is not hex"),
            (T::Time, json!("tomorrow"), "is not a time"),
            (T::Time, json!("2024-13-01T00:00:00Z"), "is not a time"),
            (T::Objlnk, json!("3"), "give object:instance"),
            (T::Objlnk, json!("3:70000"), "give object:instance"),
            (T::Corelnk, json!("3/0"), "is not CoRE link format"),
            (T::None, json!("1"), "execute it instead"),
            (T::String, json!(null), "no value given"),
            (T::Integer, json!([1, 2]), "is a list"),
        ];
        for (kind, v, want) in cases {
            let got = typed(kind, &v).unwrap_err();
            assert!(
                got.contains(want),
                "{kind:?} {v}: got {got:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn without_a_model_the_json_type_decides() {
        assert_eq!(untyped(&json!("12")), Ok(Typed::String("12".into())));
        assert_eq!(untyped(&json!(12)), Ok(Typed::Integer(12)));
        assert_eq!(untyped(&json!(1.25)), Ok(Typed::Float(1.25)));
        assert_eq!(untyped(&json!(true)), Ok(Typed::Boolean(true)));
        assert!(untyped(&json!(null)).is_err());
    }
}
