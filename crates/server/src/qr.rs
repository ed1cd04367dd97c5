//! The QR code CreateVirtualMFADevice returns (`QRCodePNG`): the
//! `otpauth://` URI of the device, as a grayscale PNG.

use qrcode::{Color, QrCode};

/// Pixels per QR module and the quiet zone, in modules.
const SCALE: usize = 4;
const QUIET: usize = 4;

/// `otpauth://totp/<device>@<account>?secret=<seed>` as a PNG, or `None`
/// if encoding fails (the seed is still returned).
pub(crate) fn otpauth_png(device: &str, account: &str, seed: &str) -> Option<Vec<u8>> {
    let uri = format!("otpauth://totp/{device}@{account}?secret={seed}");
    let code = QrCode::new(uri.as_bytes()).ok()?;
    let n = code.width();
    let colors = code.to_colors();
    let side = (n + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, c) in colors.iter().enumerate() {
        if *c != Color::Dark {
            continue;
        }
        let (mx, my) = (i % n + QUIET, i / n + QUIET);
        for dy in 0..SCALE {
            let row = (my * SCALE + dy) * side;
            for dx in 0..SCALE {
                if let Some(p) = pixels.get_mut(row + mx * SCALE + dx) {
                    *p = 0;
                }
            }
        }
    }
    let mut out = Vec::new();
    let side32 = u32::try_from(side).ok()?;
    let mut enc = png::Encoder::new(&mut out, side32, side32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().ok()?;
    w.write_image_data(&pixels).ok()?;
    w.finish().ok()?;
    Some(out)
}
