//! Behaviour tests of the whole pipeline (text -> model or errors).

use super::*;
