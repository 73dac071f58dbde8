#[mw::service]
pub trait Svc {
    #[oneway]
    async fn log(&self, line: String) -> bool;
}

fn main() {}
