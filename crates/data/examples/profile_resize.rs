use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use std::time::Instant;
fn main() {
    let src = vec![128u8; 500 * 375 * 3];
    let mut r = Resizer::new();
    println!("{:?}", r.cpu_extensions());
    let s = ImageRef::new(500, 375, &src, PixelType::U8x3).unwrap();
    let mut d = Image::new(224, 224, PixelType::U8x3);
    for filter in [FilterType::Bilinear, FilterType::CatmullRom] {
        let t = Instant::now();
        for i in 0..500 {
            let o = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter)).crop(
                10.0 + (i % 7) as f64,
                5.0,
                300.0,
                280.0,
            );
            r.resize(&s, &mut d, &o).unwrap();
        }
        println!("{filter:?} {:.0}/s", 500.0 / t.elapsed().as_secs_f64());
    }
    let mut out = vec![0f32; 3 * 224 * 224];
    let t = Instant::now();
    for _ in 0..500 {
        let buf = d.buffer();
        for c in 0..3 {
            for y in 0..224 {
                let row = &buf[y * 224 * 3..(y + 1) * 224 * 3];
                for (o, &v) in out[c * 224 * 224 + y * 224..c * 224 * 224 + (y + 1) * 224]
                    .iter_mut()
                    .zip(row.iter().skip(c).step_by(3))
                {
                    *o = v as f32 * 0.0078 - 1.0;
                }
            }
        }
        std::hint::black_box(&out);
    }
    println!("normalise {:.0}/s", 500.0 / t.elapsed().as_secs_f64());
}
