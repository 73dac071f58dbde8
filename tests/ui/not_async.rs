#[mw::service]
pub trait Svc {
    fn get(&self) -> u64;
}

fn main() {}
