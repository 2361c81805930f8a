fn main() {
    println!("sparsegrad: the command line arrives with issue 4; see README.md");
}
