//! placeholder until the radix work lands
