#[mw::service]
pub struct Svc {
    value: u64,
}

fn main() {}
