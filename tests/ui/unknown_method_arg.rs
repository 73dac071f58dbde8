#[mw::service]
pub trait Svc {
    #[method(number = 3)]
    async fn get(&self) -> u64;
}

fn main() {}
