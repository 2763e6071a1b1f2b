//! Parameter expressions: constants, `pi`, named symbols, arithmetic and the OpenQASM 2 functions.

use crate::error::{Error, Result};
use std::fmt;
use std::sync::Arc;

/// A unary function allowed in OpenQASM 2.0 parameter expressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// sine
    Sin,
    /// cosine
    Cos,
    /// tangent
    Tan,
    /// e^x
    Exp,
    /// natural logarithm
    Ln,
    /// square root
    Sqrt,
}

impl Func {
    /// The function for an OpenQASM name (`sin`, `cos`, `tan`, `exp`, `ln`, `sqrt`).
    pub fn from_name(name: &str) -> Option<Func> {
        Some(match name {
            "sin" => Func::Sin,
            "cos" => Func::Cos,
            "tan" => Func::Tan,
            "exp" => Func::Exp,
            "ln" => Func::Ln,
            "sqrt" => Func::Sqrt,
            _ => return None,
        })
    }

    /// The OpenQASM name.
    pub fn name(self) -> &'static str {
        match self {
            Func::Sin => "sin",
            Func::Cos => "cos",
            Func::Tan => "tan",
            Func::Exp => "exp",
            Func::Ln => "ln",
            Func::Sqrt => "sqrt",
        }
    }

    fn apply(self, x: f64) -> f64 {
        match self {
            Func::Sin => x.sin(),
            Func::Cos => x.cos(),
            Func::Tan => x.tan(),
            Func::Exp => x.exp(),
            Func::Ln => x.ln(),
            Func::Sqrt => x.sqrt(),
        }
    }
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `^` (power)
    Pow,
}

impl BinOp {
    fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Pow => "^",
        }
    }
}

/// A gate parameter: a number or an expression over named symbols.
///
/// ```
/// use atom_quantum::Param;
/// let p = Param::symbol("theta") * 2.0 + std::f64::consts::PI;
/// assert_eq!(p.eval(&|_| Some(0.25)).unwrap(), 0.5 + std::f64::consts::PI);
/// assert!(Param::from(1.5).as_f64().is_some());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// A literal number.
    Num(f64),
    /// The constant pi.
    Pi,
    /// A named symbol (circuit parameter, or a gate definition's formal parameter while parsing).
    Symbol(Arc<str>),
    /// Unary minus.
    Neg(Box<Param>),
    /// A binary operation.
    Bin(BinOp, Box<Param>, Box<Param>),
    /// A function call.
    Call(Func, Box<Param>),
}

impl From<f64> for Param {
    fn from(v: f64) -> Self {
        Param::Num(v)
    }
}

impl Param {
    /// A named symbol, bound later with [`crate::Circuit::bind`].
    pub fn symbol(name: &str) -> Param {
        Param::Symbol(Arc::from(name))
    }

    /// The value if the expression has no symbols.
    pub fn as_f64(&self) -> Option<f64> {
        self.eval(&|_| None).ok()
    }

    /// Evaluate with `lookup` giving each symbol's value.
    pub fn eval(&self, lookup: &dyn Fn(&str) -> Option<f64>) -> Result<f64> {
        Ok(match self {
            Param::Num(v) => *v,
            Param::Pi => std::f64::consts::PI,
            Param::Symbol(s) => lookup(s).ok_or_else(|| Error::UnboundParameter(s.to_string()))?,
            Param::Neg(a) => -a.eval(lookup)?,
            Param::Bin(op, a, b) => {
                let (x, y) = (a.eval(lookup)?, b.eval(lookup)?);
                match op {
                    BinOp::Add => x + y,
                    BinOp::Sub => x - y,
                    BinOp::Mul => x * y,
                    BinOp::Div => x / y,
                    BinOp::Pow => x.powf(y),
                }
            }
            Param::Call(f, a) => f.apply(a.eval(lookup)?),
        })
    }

    /// Replace symbols by expressions (`subst` returns `None` to keep a symbol).
    pub fn substitute(&self, subst: &dyn Fn(&str) -> Option<Param>) -> Param {
        match self {
            Param::Symbol(s) => subst(s).unwrap_or_else(|| self.clone()),
            Param::Neg(a) => Param::Neg(Box::new(a.substitute(subst))),
            Param::Bin(op, a, b) => Param::Bin(
                *op,
                Box::new(a.substitute(subst)),
                Box::new(b.substitute(subst)),
            ),
            Param::Call(f, a) => Param::Call(*f, Box::new(a.substitute(subst))),
            _ => self.clone(),
        }
    }

    /// Collect the names of the symbols used.
    pub fn symbols(&self, out: &mut Vec<String>) {
        match self {
            Param::Symbol(s) if !out.iter().any(|o| o == &**s) => {
                out.push(s.to_string());
            }
            Param::Neg(a) | Param::Call(_, a) => a.symbols(out),
            Param::Bin(_, a, b) => {
                a.symbols(out);
                b.symbols(out);
            }
            _ => {}
        }
    }

    /// Expression nesting depth (bounded by the parser).
    pub fn depth(&self) -> usize {
        match self {
            Param::Neg(a) | Param::Call(_, a) => 1 + a.depth(),
            Param::Bin(_, a, b) => 1 + a.depth().max(b.depth()),
            _ => 1,
        }
    }

    fn prec(&self) -> u8 {
        match self {
            Param::Bin(BinOp::Add | BinOp::Sub, ..) => 1,
            Param::Bin(BinOp::Mul | BinOp::Div, ..) => 2,
            Param::Neg(_) => 3,
            Param::Bin(BinOp::Pow, ..) => 4,
            _ => 5,
        }
    }
}

/// Writes a number so that it reads back bit-exactly (Rust's shortest round-trip form).
pub(crate) fn fmt_num(v: f64) -> String {
    if v.is_finite() {
        // Debug gives the shortest round-trip form (`1.5`, `1e-7`); OpenQASM 2 reals need a dot.
        let s = format!("{v:?}");
        match s.find('e') {
            Some(i) if !s[..i].contains('.') => format!("{}.0{}", &s[..i], &s[i..]),
            _ => s,
        }
    } else if v.is_nan() {
        "(0/0)".to_string()
    } else if v > 0.0 {
        "(1/0)".to_string()
    } else {
        "(-1/0)".to_string()
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Param::Num(v) => {
                if *v < 0.0 || (*v == 0.0 && v.is_sign_negative()) {
                    write!(f, "({})", fmt_num(*v))
                } else {
                    write!(f, "{}", fmt_num(*v))
                }
            }
            Param::Pi => write!(f, "pi"),
            Param::Symbol(s) => write!(f, "{s}"),
            Param::Neg(a) => {
                if a.prec() < 5 {
                    write!(f, "-({a})")
                } else {
                    write!(f, "-{a}")
                }
            }
            Param::Call(func, a) => write!(f, "{}({a})", func.name()),
            Param::Bin(op, a, b) => {
                let p = self.prec();
                // Left operand: parenthesise when it binds looser; `^` is right associative.
                let lp = if *op == BinOp::Pow {
                    a.prec() <= p
                } else {
                    a.prec() < p
                };
                let rp = if *op == BinOp::Pow {
                    b.prec() < p
                } else {
                    b.prec() <= p
                };
                if lp {
                    write!(f, "({a})")?;
                } else {
                    write!(f, "{a}")?;
                }
                write!(f, " {} ", op.symbol())?;
                if rp {
                    write!(f, "({b})")
                } else {
                    write!(f, "{b}")
                }
            }
        }
    }
}

macro_rules! arith {
    ($tr:ident, $m:ident, $op:expr) => {
        impl std::ops::$tr<Param> for Param {
            type Output = Param;
            fn $m(self, rhs: Param) -> Param {
                Param::Bin($op, Box::new(self), Box::new(rhs))
            }
        }
        impl std::ops::$tr<f64> for Param {
            type Output = Param;
            fn $m(self, rhs: f64) -> Param {
                Param::Bin($op, Box::new(self), Box::new(Param::Num(rhs)))
            }
        }
    };
}
arith!(Add, add, BinOp::Add);
arith!(Sub, sub, BinOp::Sub);
arith!(Mul, mul, BinOp::Mul);
arith!(Div, div, BinOp::Div);

impl std::ops::Neg for Param {
    type Output = Param;
    fn neg(self) -> Param {
        Param::Neg(Box::new(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_round_trips_precedence() {
        let e = Param::Bin(
            BinOp::Sub,
            Box::new(Param::Num(1.0)),
            Box::new(Param::Bin(
                BinOp::Sub,
                Box::new(Param::Num(2.0)),
                Box::new(Param::Num(3.0)),
            )),
        );
        assert_eq!(e.to_string(), "1.0 - (2.0 - 3.0)");
        assert_eq!(e.as_f64(), Some(2.0));
        assert_eq!(Param::Num(-0.5).to_string(), "(-0.5)");
    }
}
