//! `result_type`: Spark DDL type strings, the subset `spark_udf` accepts, their Arrow
//! types, and the default a model's output signature implies.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::pyfunc::signature::{ColType, MlflowType, Schema};

/// A Spark SQL data type, as far as `spark_udf` results go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SparkType {
    Boolean,
    Byte,
    Short,
    Int,
    Long,
    Float,
    Double,
    String,
    Binary,
    Date,
    Timestamp,
    TimestampNtz,
    Decimal(u8, i8),
    Void,
    Variant,
    Array(Box<SparkType>),
    Map(Box<SparkType>, Box<SparkType>),
    Struct(Vec<(String, SparkType)>),
}

/// The result type of a model UDF: the Spark type, and whether it was inferred from the
/// model (inferred types are not validated, as in `spark_udf`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResultType {
    pub spark: SparkType,
    pub inferred: bool,
}

impl ResultType {
    /// The result type for a caller-supplied DDL string, or the model's default.
    pub fn resolve(ddl: Option<&str>, outputs: Option<&Schema>) -> Result<Self> {
        match ddl {
            Some(ddl) => {
                let spark = SparkType::parse(ddl)?;
                if !spark.is_udf_result() {
                    return Err(Error::UnsupportedResultType {
                        ddl: crate::limits::abbreviate(ddl, 200),
                    });
                }
                Ok(Self {
                    spark,
                    inferred: false,
                })
            }
            None => Ok(Self {
                spark: SparkType::default_for(outputs)?,
                inferred: true,
            }),
        }
    }
}

impl SparkType {
    /// Parses a Spark DDL type string the way `spark_udf` does: `"bool"` means boolean,
    /// then a single type (`double`, `array<int>`, `struct<a:int>`), else a top-level
    /// field list (`"a double, b string"`) meaning a struct.
    pub fn parse(ddl: &str) -> Result<Self> {
        let text = if ddl == "bool" { "boolean" } else { ddl };
        let err = |message: String| Error::ResultTypeSyntax {
            ddl: crate::limits::abbreviate(ddl, 200),
            message,
        };
        let tokens = tokenize(text).map_err(err)?;
        let mut single = Parser::new(&tokens);
        let single_error = match single.parse_type() {
            Ok(ty) if single.at_end() => return Ok(ty),
            Ok(_) => format!("unexpected {}", single.describe_current()),
            Err(message) if single.too_deep => return Err(err(message)),
            Err(message) => message,
        };
        let mut fields = Parser::new(&tokens);
        let fields_error = match fields.parse_fields(None) {
            Ok(f) if fields.at_end() && !f.is_empty() => return Ok(SparkType::Struct(f)),
            Ok(_) => format!("unexpected {}", fields.describe_current()),
            Err(message) => message,
        };
        // The reading that got further explains the mistake best: `quaternion` is an
        // unknown type, not a field without one; `a double,` lacks a field.
        Err(err(if fields.pos > single.pos || fields.too_deep {
            fields_error
        } else {
            single_error
        }))
    }

    /// True when `spark_udf` accepts this as a caller-supplied result type.
    pub fn is_udf_result(&self) -> bool {
        match self {
            Self::Int | Self::Long | Self::Float | Self::Double | Self::String | Self::Boolean => {
                true
            }
            Self::Array(e) => e.is_udf_result(),
            Self::Struct(fields) => fields.iter().all(|(_, t)| t.is_udf_result()),
            Self::Map(k, v) => **k == Self::String && v.is_udf_result(),
            _ => false,
        }
    }

    /// The result type `spark_udf` infers from a model's output schema (`double` without one).
    pub fn default_for(outputs: Option<&Schema>) -> Result<Self> {
        let unsupported = |message: String| Error::OutputSchema { message };
        match outputs {
            None => Ok(Self::Double),
            Some(schema) if schema.is_empty() => Ok(Self::Double),
            Some(Schema::Columns(cols)) => {
                let types: Vec<_> = cols.iter().map(|c| Self::from_col_type(&c.ty)).collect();
                if types.len() == 1 {
                    return Ok(types.into_iter().next().expect("one type"));
                }
                Ok(Self::Struct(
                    cols.iter()
                        .zip(types)
                        .enumerate()
                        .map(|(i, (c, t))| (c.name.clone().unwrap_or_else(|| i.to_string()), t))
                        .collect(),
                ))
            }
            Some(Schema::Tensors(tensors)) => {
                let types = tensors
                    .iter()
                    .map(|t| {
                        let elem = MlflowType::from_numpy(&t.dtype).ok_or_else(|| {
                            unsupported(format!(
                                "model output tensor spec type {} is not supported in spark_udf",
                                t.dtype
                            ))
                        })?;
                        let elem = Self::from_mlflow(elem);
                        match t.shape.len() {
                            1 => Ok(Self::Array(Box::new(elem))),
                            2 => Ok(Self::Array(Box::new(Self::Array(Box::new(elem))))),
                            _ => Err(unsupported(format!(
                                "only 1D or 2D tensors are supported as spark_udf return value, but model output has shape {:?}",
                                t.shape
                            ))),
                        }
                    })
                    .collect::<Result<Vec<_>>>()?;
                if types.len() == 1 {
                    return Ok(types.into_iter().next().expect("one type"));
                }
                Ok(Self::Struct(
                    tensors
                        .iter()
                        .zip(types)
                        .enumerate()
                        .map(|(i, (t, ty))| (t.name.clone().unwrap_or_else(|| i.to_string()), ty))
                        .collect(),
                ))
            }
        }
    }

    fn from_mlflow(t: MlflowType) -> Self {
        match t {
            MlflowType::Boolean => Self::Boolean,
            MlflowType::Integer => Self::Int,
            MlflowType::Long => Self::Long,
            MlflowType::Float => Self::Float,
            MlflowType::Double => Self::Double,
            MlflowType::String => Self::String,
            MlflowType::Binary => Self::Binary,
            MlflowType::Datetime => Self::Timestamp,
        }
    }

    fn from_col_type(t: &ColType) -> Self {
        match t {
            ColType::Primitive(p) => Self::from_mlflow(*p),
            ColType::Array(e) => Self::Array(Box::new(Self::from_col_type(e))),
            ColType::Map(v) => Self::Map(Box::new(Self::String), Box::new(Self::from_col_type(v))),
            ColType::Object(props) => Self::Struct(
                props
                    .iter()
                    .map(|p| (p.name.clone(), Self::from_col_type(&p.ty)))
                    .collect(),
            ),
            ColType::Any => Self::Variant,
        }
    }

    /// The Arrow type Spark hands back for this type.
    pub fn to_arrow(&self) -> Result<DataType> {
        Ok(match self {
            Self::Boolean => DataType::Boolean,
            Self::Byte => DataType::Int8,
            Self::Short => DataType::Int16,
            Self::Int => DataType::Int32,
            Self::Long => DataType::Int64,
            Self::Float => DataType::Float32,
            Self::Double => DataType::Float64,
            Self::String => DataType::Utf8,
            Self::Binary => DataType::Binary,
            Self::Date => DataType::Date32,
            Self::Timestamp => {
                DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into()))
            }
            Self::TimestampNtz => {
                DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None)
            }
            Self::Decimal(p, s) => DataType::Decimal128(*p, *s),
            Self::Void => DataType::Null,
            Self::Variant => {
                return Err(Error::OutputSchema {
                    message: "variant results (an 'any' output) are not supported".into(),
                });
            }
            Self::Array(e) => DataType::List(Arc::new(Field::new("element", e.to_arrow()?, true))),
            Self::Map(k, v) => DataType::Map(
                Arc::new(Field::new(
                    "entries",
                    DataType::Struct(Fields::from(vec![
                        Field::new("key", k.to_arrow()?, false),
                        Field::new("value", v.to_arrow()?, true),
                    ])),
                    false,
                )),
                false,
            ),
            Self::Struct(fields) => DataType::Struct(
                fields
                    .iter()
                    .map(|(n, t)| Ok(Field::new(n, t.to_arrow()?, true)))
                    .collect::<Result<Fields>>()?,
            ),
        })
    }

    /// A JSON description for the Python bridge: `{"kind": ..., ...}`.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Array(e) => json!({"kind": "array", "element": e.to_json()}),
            Self::Map(k, v) => json!({"kind": "map", "key": k.to_json(), "value": v.to_json()}),
            Self::Struct(fields) => json!({
                "kind": "struct",
                "fields": fields.iter().map(|(n, t)| json!([n, t.to_json()])).collect::<Vec<_>>(),
            }),
            Self::Decimal(p, s) => json!({"kind": "decimal", "precision": p, "scale": s}),
            other => json!({"kind": other.to_string()}),
        }
    }
}

/// Spark's `simpleString` form: `double`, `array<int>`, `struct<a:double,b:string>`.
impl fmt::Display for SparkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Boolean => f.write_str("boolean"),
            Self::Byte => f.write_str("tinyint"),
            Self::Short => f.write_str("smallint"),
            Self::Int => f.write_str("int"),
            Self::Long => f.write_str("bigint"),
            Self::Float => f.write_str("float"),
            Self::Double => f.write_str("double"),
            Self::String => f.write_str("string"),
            Self::Binary => f.write_str("binary"),
            Self::Date => f.write_str("date"),
            Self::Timestamp => f.write_str("timestamp"),
            Self::TimestampNtz => f.write_str("timestamp_ntz"),
            Self::Decimal(p, s) => write!(f, "decimal({p},{s})"),
            Self::Void => f.write_str("void"),
            Self::Variant => f.write_str("variant"),
            Self::Array(e) => write!(f, "array<{e}>"),
            Self::Map(k, v) => write!(f, "map<{k},{v}>"),
            Self::Struct(fields) => {
                f.write_str("struct<")?;
                for (i, (n, t)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{n}:{t}")?;
                }
                f.write_str(">")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Quoted(String),
    Number(u64),
    Str,
    Punct(char),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut ident = String::new();
            while let Some(&c) = chars
                .peek()
                .filter(|c| c.is_ascii_alphanumeric() || **c == '_')
            {
                ident.push(c);
                chars.next();
            }
            tokens.push(Token::Ident(ident));
        } else if c.is_ascii_digit() {
            let mut digits = String::new();
            while let Some(&c) = chars.peek().filter(|c| c.is_ascii_digit()) {
                digits.push(c);
                chars.next();
            }
            tokens.push(Token::Number(
                digits.parse().map_err(|_| "number too large")?,
            ));
        } else if c == '`' || c == '\'' || c == '"' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated {c}")),
                    Some(q) if q == c => {
                        if c == '`' && chars.peek() == Some(&'`') {
                            chars.next();
                            s.push('`');
                        } else {
                            break;
                        }
                    }
                    Some(other) => s.push(other),
                }
            }
            tokens.push(if c == '`' {
                Token::Quoted(s)
            } else {
                Token::Str
            });
        } else if "<>(),:".contains(c) {
            tokens.push(Token::Punct(c));
            chars.next();
        } else {
            return Err(format!("unexpected character '{c}'"));
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: &'a [Token],
    pos: usize,
    /// Nesting of the type being read, and its limit ([`crate::limits::max_type_depth`]).
    depth: usize,
    max_depth: usize,
    /// Set when reading stopped at the depth limit.
    too_deep: bool,
}

impl<'a> Parser<'a> {
    fn new(tokens: &'a [Token]) -> Self {
        Self {
            tokens,
            pos: 0,
            depth: 0,
            max_depth: crate::limits::max_type_depth(),
            too_deep: false,
        }
    }

    fn at_end(&self) -> bool {
        self.pos == self.tokens.len()
    }

    fn describe_current(&self) -> String {
        match self.tokens.get(self.pos) {
            None => "end of input".into(),
            Some(Token::Ident(s)) => format!("'{s}'"),
            Some(Token::Quoted(s)) => format!("`{s}`"),
            Some(Token::Number(n)) => format!("'{n}'"),
            Some(Token::Str) => "a string literal".into(),
            Some(Token::Punct(c)) => format!("'{c}'"),
        }
    }

    fn peek_punct(&self, c: char) -> bool {
        self.tokens.get(self.pos) == Some(&Token::Punct(c))
    }

    fn expect_punct(&mut self, c: char) -> Result<(), String> {
        if self.peek_punct(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected '{c}', found {}", self.describe_current()))
        }
    }

    fn keyword(&mut self, kw: &str) -> bool {
        if matches!(self.tokens.get(self.pos), Some(Token::Ident(s)) if s.eq_ignore_ascii_case(kw))
        {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn number(&mut self) -> Result<u64, String> {
        match self.tokens.get(self.pos) {
            Some(Token::Number(n)) => {
                self.pos += 1;
                Ok(*n)
            }
            _ => Err(format!(
                "expected a number, found {}",
                self.describe_current()
            )),
        }
    }

    fn parse_type(&mut self) -> Result<SparkType, String> {
        self.depth += 1;
        let parsed = self.parse_type_at_depth();
        self.depth -= 1;
        parsed
    }

    fn parse_type_at_depth(&mut self) -> Result<SparkType, String> {
        if self.depth > self.max_depth {
            self.too_deep = true;
            return Err(format!(
                "types nest deeper than {} levels (the limit)\nhint: raise it with --max-type-depth",
                self.max_depth
            ));
        }
        let name = match self.tokens.get(self.pos) {
            Some(Token::Ident(s)) => s.to_ascii_lowercase(),
            _ => {
                return Err(format!(
                    "expected a type, found {}",
                    self.describe_current()
                ));
            }
        };
        self.pos += 1;
        Ok(match name.as_str() {
            "boolean" => SparkType::Boolean,
            "tinyint" | "byte" => SparkType::Byte,
            "smallint" | "short" => SparkType::Short,
            "int" | "integer" => SparkType::Int,
            "bigint" | "long" => SparkType::Long,
            "float" | "real" => SparkType::Float,
            "double" => SparkType::Double,
            "string" => SparkType::String,
            "binary" => SparkType::Binary,
            "date" => SparkType::Date,
            "timestamp" | "timestamp_ltz" => SparkType::Timestamp,
            "timestamp_ntz" => SparkType::TimestampNtz,
            "void" => SparkType::Void,
            "variant" => SparkType::Variant,
            "decimal" | "dec" | "numeric" => {
                let (mut p, mut s) = (10, 0);
                if self.peek_punct('(') {
                    self.pos += 1;
                    p = self.number()?;
                    if self.peek_punct(',') {
                        self.pos += 1;
                        s = self.number()?;
                    }
                    self.expect_punct(')')?;
                }
                if p == 0 || p > 38 || s > p {
                    return Err(format!("invalid decimal({p},{s})"));
                }
                SparkType::Decimal(p as u8, s as i8)
            }
            "array" => {
                self.expect_punct('<')?;
                let e = self.parse_type()?;
                self.expect_punct('>')?;
                SparkType::Array(Box::new(e))
            }
            "map" => {
                self.expect_punct('<')?;
                let k = self.parse_type()?;
                self.expect_punct(',')?;
                let v = self.parse_type()?;
                self.expect_punct('>')?;
                SparkType::Map(Box::new(k), Box::new(v))
            }
            "struct" => {
                self.expect_punct('<')?;
                let fields = if self.peek_punct('>') {
                    Vec::new()
                } else {
                    self.parse_fields(Some('>'))?
                };
                self.expect_punct('>')?;
                SparkType::Struct(fields)
            }
            other => return Err(format!("unknown data type '{other}'")),
        })
    }

    /// `name [:] type [NOT NULL] [COMMENT '...']` separated by commas, up to `close`.
    fn parse_fields(&mut self, close: Option<char>) -> Result<Vec<(String, SparkType)>, String> {
        let mut fields = Vec::new();
        loop {
            let name = match self.tokens.get(self.pos) {
                Some(Token::Ident(s) | Token::Quoted(s)) => s.clone(),
                _ => {
                    return Err(format!(
                        "expected a field name, found {}",
                        self.describe_current()
                    ));
                }
            };
            self.pos += 1;
            if self.peek_punct(':') {
                self.pos += 1;
            }
            let ty = self.parse_type()?;
            if self.keyword("not") && !self.keyword("null") {
                return Err("expected NULL after NOT".into());
            }
            if self.keyword("comment") {
                match self.tokens.get(self.pos) {
                    Some(Token::Str) => self.pos += 1,
                    _ => return Err("expected a string after COMMENT".into()),
                }
            }
            fields.push((name, ty));
            if self.peek_punct(',') {
                self.pos += 1;
                continue;
            }
            if self.at_end() || close.is_some_and(|c| self.peek_punct(c)) {
                return Ok(fields);
            }
            return Err(format!("unexpected {}", self.describe_current()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> SparkType {
        SparkType::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn primitive_names_and_aliases() {
        assert_eq!(parse("DOUBLE"), SparkType::Double);
        assert_eq!(parse("bool"), SparkType::Boolean);
        assert_eq!(parse("long"), SparkType::Long);
        assert_eq!(parse("Integer"), SparkType::Int);
        assert_eq!(parse("real"), SparkType::Float);
        assert_eq!(parse("decimal(10, 2)"), SparkType::Decimal(10, 2));
    }

    #[test]
    fn nested_types_print_as_simple_strings() {
        assert_eq!(
            parse("array<array<double>>").to_string(),
            "array<array<double>>"
        );
        assert_eq!(
            parse("map<string, bigint>").to_string(),
            "map<string,bigint>"
        );
        assert_eq!(
            parse("struct<a:double, b string, `c d`: array<int>>").to_string(),
            "struct<a:double,b:string,c d:array<int>>"
        );
    }

    #[test]
    fn top_level_field_list_is_a_struct() {
        assert_eq!(
            parse("a double, b string").to_string(),
            "struct<a:double,b:string>"
        );
        assert_eq!(parse("a: int, c: int").to_string(), "struct<a:int,c:int>");
        assert_eq!(parse("a double").to_string(), "struct<a:double>");
        assert_eq!(
            parse("x int NOT NULL COMMENT 'hi'").to_string(),
            "struct<x:int>"
        );
    }

    #[test]
    fn syntax_errors_are_reported() {
        for bad in [
            "not_a_type",
            "array<double",
            "map<string>",
            "",
            "a double,",
            "struct<a:>",
        ] {
            let err = SparkType::parse(bad).expect_err(bad).to_string();
            assert!(
                err.starts_with(&format!("cannot parse result type '{bad}'")),
                "{err}"
            );
        }
    }

    #[test]
    fn unknown_type_names_are_named() {
        let err = SparkType::parse("quaternion")
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("unknown data type 'quaternion'"), "{err}");
        let err = SparkType::parse("array<quaternion>")
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("unknown data type 'quaternion'"), "{err}");
        let err = SparkType::parse("a double,")
            .expect_err("no field")
            .to_string();
        assert!(err.contains("expected a field name"), "{err}");
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_an_error_not_a_stack_overflow() {
        let nested = |open: &str, close: &str, n: usize| {
            format!("{}double{}", open.repeat(n), close.repeat(n))
        };
        let limit = crate::limits::max_type_depth();
        assert!(SparkType::parse(&nested("array<", ">", limit - 1)).is_ok());
        for ddl in [
            nested("array<", ">", limit),
            nested("array<", ">", 100_000),
            nested("map<string,", ">", 5_000),
            nested("struct<a:", ">", 5_000),
            format!("a {}", nested("struct<b:", ">", 5_000)),
        ] {
            let err = SparkType::parse(&ddl).expect_err("too deep").to_string();
            assert!(
                err.contains(&format!("deeper than {limit} levels")),
                "{err:.200}"
            );
            assert!(ResultType::resolve(Some(&ddl), None).is_err());
        }
    }

    proptest::proptest! {
        /// Random and mutated DDL never panics: it parses, or fails with a normal error.
        #[test]
        fn any_text_parses_or_fails_cleanly(text in "[a-z<>(),:` '0-9]{0,60}") {
            let _ = SparkType::parse(&text).map(|t| t.to_string());
        }

        #[test]
        fn mutated_valid_types_parse_or_fail_cleanly(
            base in proptest::sample::select(vec![
                "struct<a:double,b:array<map<string,int>>>",
                "label string, score double",
                "decimal(10,2)",
                "array<array<float>>",
            ]),
            at in 0usize..48,
            with in proptest::char::any(),
        ) {
            let mut text: Vec<char> = base.chars().collect();
            let at = at % text.len();
            text[at] = with;
            let text: String = text.into_iter().collect();
            if let Ok(t) = SparkType::parse(&text) {
                // What parses prints as DDL that parses to the same type.
                proptest::prop_assert_eq!(SparkType::parse(&t.to_string()).ok(), Some(t));
            }
        }
    }

    #[test]
    fn only_spark_udf_result_types_are_accepted() {
        for ok in [
            "int",
            "bigint",
            "float",
            "double",
            "string",
            "boolean",
            "array<array<int>>",
            "a double, b array<string>",
            "map<string, array<double>>",
        ] {
            assert!(ResultType::resolve(Some(ok), None).is_ok(), "{ok}");
        }
        for bad in [
            "binary",
            "timestamp",
            "date",
            "tinyint",
            "smallint",
            "decimal(5,2)",
            "void",
            "variant",
            "map<int,double>",
            "array<binary>",
            "a double, b date",
        ] {
            let err = ResultType::resolve(Some(bad), None)
                .expect_err(bad)
                .to_string();
            assert!(err.starts_with("invalid 'spark_udf' result type"), "{err}");
        }
    }

    #[test]
    fn defaults_follow_the_output_schema() {
        let schema = |json: &str| Schema::from_json(json).expect("valid schema");
        let default = |s: Option<&Schema>| {
            SparkType::default_for(s)
                .map(|t| t.to_string())
                .map_err(|e| e.to_string())
        };
        assert_eq!(default(None).ok().as_deref(), Some("double"));
        let long = schema(r#"[{"type": "long"}]"#);
        assert_eq!(default(Some(&long)).ok().as_deref(), Some("bigint"));
        let two = schema(r#"[{"type": "double", "name": "a"}, {"type": "string", "name": "b"}]"#);
        assert_eq!(
            default(Some(&two)).ok().as_deref(),
            Some("struct<a:double,b:string>")
        );
        let unnamed = schema(r#"[{"type": "double"}, {"type": "string"}]"#);
        assert_eq!(
            default(Some(&unnamed)).ok().as_deref(),
            Some("struct<0:double,1:string>")
        );
        let arr = schema(r#"[{"type": "array", "items": {"type": "double"}}]"#);
        assert_eq!(default(Some(&arr)).ok().as_deref(), Some("array<double>"));
        let dt = schema(r#"[{"type": "datetime"}]"#);
        assert_eq!(default(Some(&dt)).ok().as_deref(), Some("timestamp"));
        let t1 =
            schema(r#"[{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1]}}]"#);
        assert_eq!(default(Some(&t1)).ok().as_deref(), Some("array<double>"));
        let t2 =
            schema(r#"[{"type": "tensor", "tensor-spec": {"dtype": "int32", "shape": [-1, 3]}}]"#);
        assert_eq!(
            default(Some(&t2)).ok().as_deref(),
            Some("array<array<int>>")
        );
        let t3 = schema(
            r#"[{"type": "tensor", "tensor-spec": {"dtype": "int32", "shape": [-1, 3, 2]}}]"#,
        );
        assert!(
            default(Some(&t3))
                .expect_err("3-D")
                .contains("only 1D or 2D")
        );
        let t8 =
            schema(r#"[{"type": "tensor", "tensor-spec": {"dtype": "uint8", "shape": [-1]}}]"#);
        assert!(
            default(Some(&t8))
                .expect_err("uint8")
                .contains("not supported")
        );
    }

    #[test]
    fn arrow_types_match_spark() {
        let t = parse("a int, b array<float>, c map<string,double>")
            .to_arrow()
            .expect("arrow");
        let DataType::Struct(f) = t else { panic!() };
        assert_eq!(f[0].data_type(), &DataType::Int32);
        assert!(
            matches!(f[1].data_type(), DataType::List(e) if e.data_type() == &DataType::Float32)
        );
        assert!(matches!(f[2].data_type(), DataType::Map(_, false)));
    }
}
