use funmatch_data::decode::decode_bytes;
use funmatch_data::view::{inception_crop, render};
use funmatch_data::{Pixels, Rng, Stream, ViewConfig};
use std::time::Instant;
fn main() {
    let dir = std::path::Path::new("/work/shared/data/photos-500x375");
    let files: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    let pix: Vec<Pixels> = files.iter().take(50).map(|f| decode_bytes(f, "x").unwrap()).collect();
    let view = ViewConfig::square(224);
    let sz = view.floats();
    let crops: Vec<_> = pix
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut rng = Rng::keyed(0, Stream::View, &[i as u64]);
            inception_crop(&mut rng, p.width(), p.height())
        })
        .collect();
    let mut reuse = vec![0.0f32; 50 * sz];
    for _ in 0..3 {
        let t = Instant::now();
        for _ in 0..4 {
            let mut buf = vec![0.0f32; 50 * sz];
            for (i, p) in pix.iter().enumerate() {
                render(p, crops[i], true, &view, &mut buf[i * sz..(i + 1) * sz]).unwrap();
            }
            std::hint::black_box(&buf);
        }
        println!("fresh zeroed batch {:.0}/s", 200.0 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        for _ in 0..4 {
            for (i, p) in pix.iter().enumerate() {
                render(p, crops[i], true, &view, &mut reuse[i * sz..(i + 1) * sz]).unwrap();
            }
            std::hint::black_box(&reuse);
        }
        println!("reused batch {:.0}/s", 200.0 / t.elapsed().as_secs_f64());
        let mut one = vec![0.0f32; sz];
        let t = Instant::now();
        for _ in 0..4 {
            for (i, p) in pix.iter().enumerate() {
                render(p, crops[i], true, &view, &mut one).unwrap();
            }
            std::hint::black_box(&one);
        }
        println!("one image buffer {:.0}/s", 200.0 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        for _ in 0..4 {
            let buf = vec![0.0f32; 50 * sz];
            std::hint::black_box(&buf);
        }
        println!("zeroed alloc only {:.0}/s", 200.0 / t.elapsed().as_secs_f64());
    }
}
