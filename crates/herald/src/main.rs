fn main() {
    println!("herald {}", env!("CARGO_PKG_VERSION"));
}
