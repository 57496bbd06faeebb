//! A chart of a benchmark run: throughput over time (warm-up shaded) and the time each pipeline
//! stage takes per sample, labelled with where it ran. The chart is laid out once as a list of
//! shapes, then written as SVG text or rasterised to PNG (embedded-graphics' built-in bitmap
//! font, encoded with the png crate), so both formats show the same thing.

use super::report::BenchReport;
use std::fmt::Write;

const WIDTH: u32 = 800;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 30.0;
const PLOT_W: f64 = WIDTH as f64 - LEFT - RIGHT;
const TIME_TOP: f64 = 50.0;
const TIME_H: f64 = 220.0;
const BARS_TOP: f64 = TIME_TOP + TIME_H + 80.0;
const BAR_H: f64 = 22.0;

type Rgb = [u8; 3];
const BLACK: Rgb = [0, 0, 0];
const GRID: Rgb = [0xdd, 0xdd, 0xdd];
const WARM_FILL: Rgb = [0xf3, 0xe6, 0xc4];
const WARM_TEXT: Rgb = [0x8a, 0x6d, 0x1f];
const LINE: Rgb = [0x1f, 0x5f, 0xa8];
const BAR: Rgb = [0x4c, 0x9a, 0x5b];

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

/// What a chart is drawn from.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Rect {
        x: f64,
        y: f64,
        w: f64,
        h: f64,
        fill: Rgb,
    },
    Line {
        from: (f64, f64),
        to: (f64, f64),
        color: Rgb,
        width: u32,
    },
    Polyline {
        points: Vec<(f64, f64)>,
        color: Rgb,
        width: u32,
    },
    /// `y` is the text baseline.
    Text {
        x: f64,
        y: f64,
        text: String,
        anchor: Anchor,
        bold: bool,
        color: Rgb,
    },
}

/// A laid-out chart.
pub struct Chart {
    pub width: u32,
    pub height: u32,
    pub shapes: Vec<Shape>,
}

/// A "nice" upper bound for an axis: 1, 2 or 5 × 10^k at or above `max`.
fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * magnitude)
}

fn text(x: f64, y: f64, text: String, anchor: Anchor) -> Shape {
    Shape::Text {
        x,
        y,
        text,
        anchor,
        bold: false,
        color: BLACK,
    }
}

fn heading(x: f64, y: f64, text: String) -> Shape {
    Shape::Text {
        x,
        y,
        text,
        anchor: Anchor::Start,
        bold: true,
        color: BLACK,
    }
}

/// Lay out the chart for a report.
pub fn layout(report: &BenchReport) -> Chart {
    let height = (BARS_TOP + report.stages.len() as f64 * (BAR_H + 8.0) + 40.0) as u32;
    let mut shapes = vec![
        Shape::Rect {
            x: 0.0,
            y: 0.0,
            w: f64::from(WIDTH),
            h: f64::from(height),
            fill: [255; 3],
        },
        heading(
            LEFT,
            24.0,
            format!(
                "sluice bench {} - {:.0} images/s, {} threads, batch {}, data stall {:.1}%",
                report.workload,
                report.images_per_second,
                report.threads,
                report.batch_size,
                report.stall_fraction * 100.0
            ),
        ),
    ];

    // Throughput over time.
    let t_max = report.wall_seconds.max(1e-9);
    let y_max = nice_ceiling(
        report
            .timeline
            .iter()
            .map(|p| p.images_per_second)
            .fold(0.0, f64::max),
    );
    let x = |t: f64| LEFT + t / t_max * PLOT_W;
    let y = |v: f64| TIME_TOP + TIME_H - v / y_max * TIME_H;
    if report.warmup_end_s > 0.0 {
        shapes.push(Shape::Rect {
            x: LEFT,
            y: TIME_TOP,
            w: x(report.warmup_end_s) - LEFT,
            h: TIME_H,
            fill: WARM_FILL,
        });
        shapes.push(Shape::Text {
            x: LEFT + 4.0,
            y: TIME_TOP + 14.0,
            text: "warm-up".into(),
            anchor: Anchor::Start,
            bold: false,
            color: WARM_TEXT,
        });
    }
    for i in 0..=5 {
        let v = y_max * f64::from(i) / 5.0;
        shapes.push(Shape::Line {
            from: (LEFT, y(v)),
            to: (LEFT + PLOT_W, y(v)),
            color: GRID,
            width: 1,
        });
        shapes.push(text(LEFT - 6.0, y(v) + 4.0, format!("{v:.0}"), Anchor::End));
        let t = t_max * f64::from(i) / 5.0;
        shapes.push(text(
            x(t),
            TIME_TOP + TIME_H + 18.0,
            format!("{t:.1} s"),
            Anchor::Middle,
        ));
    }
    let points = std::iter::once((0.0, 0.0))
        .chain(report.timeline.iter().map(|p| (p.t_s, p.images_per_second)))
        .map(|(t, v)| (x(t), y(v)))
        .collect();
    shapes.push(Shape::Polyline {
        points,
        color: LINE,
        width: 2,
    });
    shapes.push(heading(LEFT, TIME_TOP - 8.0, "images/s over time".into()));

    // Per-stage time per sample.
    shapes.push(heading(
        LEFT,
        BARS_TOP - 12.0,
        "time per sample by stage (µs on one thread) and where it ran".into(),
    ));
    // Room for the longest "name [cpu]" label (about 7 px a character in either format).
    let longest = report
        .stages
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(0);
    let label_w = ((longest + 8) as f64 * 7.0).clamp(200.0, 420.0);
    let bar_max = report
        .stages
        .iter()
        .map(|r| r.us_per_call)
        .fold(0.0, f64::max)
        .max(1e-9);
    for (i, row) in report.stages.iter().enumerate() {
        let top = BARS_TOP + i as f64 * (BAR_H + 8.0);
        let w = row.us_per_call / bar_max * (PLOT_W - label_w - 80.0);
        shapes.push(text(
            LEFT,
            top + 15.0,
            format!("{} [cpu]", row.name),
            Anchor::Start,
        ));
        shapes.push(Shape::Rect {
            x: LEFT + label_w,
            y: top,
            w,
            h: BAR_H,
            fill: BAR,
        });
        shapes.push(text(
            LEFT + label_w + w + 6.0,
            top + 15.0,
            format!("{:.1} µs ({:.0}%)", row.us_per_call, row.share * 100.0),
            Anchor::Start,
        ));
    }
    Chart {
        width: WIDTH,
        height,
        shapes,
    }
}

fn hex([r, g, b]: Rgb) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Chart {
    pub fn to_svg(&self) -> String {
        let mut s = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="12">"#,
            self.width, self.height
        );
        s.push('\n');
        for shape in &self.shapes {
            let _ = match shape {
                Shape::Rect { x, y, w, h, fill } => writeln!(
                    s,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{}"/>"#,
                    hex(*fill)
                ),
                Shape::Line {
                    from,
                    to,
                    color,
                    width,
                } => writeln!(
                    s,
                    r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="{width}"/>"#,
                    from.0,
                    from.1,
                    to.0,
                    to.1,
                    hex(*color)
                ),
                Shape::Polyline {
                    points,
                    color,
                    width,
                } => {
                    let p: Vec<String> = points
                        .iter()
                        .map(|(x, y)| format!("{x:.1},{y:.1}"))
                        .collect();
                    writeln!(
                        s,
                        r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="{width}"/>"#,
                        p.join(" "),
                        hex(*color)
                    )
                }
                Shape::Text {
                    x,
                    y,
                    text,
                    anchor,
                    bold,
                    color,
                } => {
                    let anchor = match anchor {
                        Anchor::Start => "start",
                        Anchor::Middle => "middle",
                        Anchor::End => "end",
                    };
                    let weight = if *bold { r#" font-weight="bold""# } else { "" };
                    writeln!(
                        s,
                        r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}" fill="{}"{weight}>{}</text>"#,
                        hex(*color),
                        escape(text)
                    )
                }
            };
        }
        s.push_str("</svg>\n");
        s
    }

    pub fn to_png(&self) -> Vec<u8> {
        let mut canvas = png::Canvas::new(self.width, self.height);
        canvas.draw(&self.shapes);
        canvas.encode()
    }
}

mod png {
    //! Rasterising shapes into an RGB buffer with embedded-graphics.
    use super::{Anchor, Rgb, Shape};
    use embedded_graphics::mono_font::iso_8859_1::{FONT_7X13, FONT_7X13_BOLD};
    use embedded_graphics::mono_font::MonoTextStyle;
    use embedded_graphics::pixelcolor::Rgb888;
    use embedded_graphics::prelude::*;
    use embedded_graphics::primitives::{Line, PrimitiveStyle, Rectangle};
    use embedded_graphics::text::{Alignment, Text};

    pub struct Canvas {
        width: u32,
        height: u32,
        rgb: Vec<u8>,
    }

    impl OriginDimensions for Canvas {
        fn size(&self) -> Size {
            Size::new(self.width, self.height)
        }
    }

    impl DrawTarget for Canvas {
        type Color = Rgb888;
        type Error = std::convert::Infallible;

        fn draw_iter<I: IntoIterator<Item = Pixel<Rgb888>>>(
            &mut self,
            pixels: I,
        ) -> Result<(), Self::Error> {
            for Pixel(p, c) in pixels {
                if p.x >= 0 && p.y >= 0 && (p.x as u32) < self.width && (p.y as u32) < self.height {
                    let i = (p.y as usize * self.width as usize + p.x as usize) * 3;
                    self.rgb[i..i + 3].copy_from_slice(&[c.r(), c.g(), c.b()]);
                }
            }
            Ok(())
        }
    }

    fn color([r, g, b]: Rgb) -> Rgb888 {
        Rgb888::new(r, g, b)
    }

    fn point(x: f64, y: f64) -> Point {
        Point::new(x.round() as i32, y.round() as i32)
    }

    impl Canvas {
        pub fn new(width: u32, height: u32) -> Self {
            Canvas {
                width,
                height,
                rgb: vec![255; width as usize * height as usize * 3],
            }
        }

        pub fn draw(&mut self, shapes: &[Shape]) {
            for shape in shapes {
                let _ = match shape {
                    Shape::Rect { x, y, w, h, fill } => Rectangle::new(
                        point(*x, *y),
                        Size::new(w.max(0.0).round() as u32, h.max(0.0).round() as u32),
                    )
                    .into_styled(PrimitiveStyle::with_fill(color(*fill)))
                    .draw(self),
                    Shape::Line {
                        from,
                        to,
                        color: c,
                        width,
                    } => Line::new(point(from.0, from.1), point(to.0, to.1))
                        .into_styled(PrimitiveStyle::with_stroke(color(*c), *width))
                        .draw(self),
                    Shape::Polyline {
                        points,
                        color: c,
                        width,
                    } => {
                        for pair in points.windows(2) {
                            let _ =
                                Line::new(point(pair[0].0, pair[0].1), point(pair[1].0, pair[1].1))
                                    .into_styled(PrimitiveStyle::with_stroke(color(*c), *width))
                                    .draw(self);
                        }
                        Ok(())
                    }
                    Shape::Text {
                        x,
                        y,
                        text,
                        anchor,
                        bold,
                        color: c,
                    } => {
                        let font = if *bold { &FONT_7X13_BOLD } else { &FONT_7X13 };
                        let alignment = match anchor {
                            Anchor::Start => Alignment::Left,
                            Anchor::Middle => Alignment::Center,
                            Anchor::End => Alignment::Right,
                        };
                        Text::with_alignment(
                            text,
                            point(*x, *y),
                            MonoTextStyle::new(font, color(*c)),
                            alignment,
                        )
                        .draw(self)
                        .map(|_| ())
                    }
                };
            }
        }

        pub fn encode(&self) -> Vec<u8> {
            let mut out = Vec::new();
            let mut encoder = png::Encoder::new(&mut out, self.width, self.height);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            encoder.set_compression(png::Compression::High);
            let mut writer = encoder
                .write_header()
                .expect("writing to memory cannot fail");
            writer
                .write_image_data(&self.rgb)
                .expect("buffer matches the declared size");
            writer.finish().expect("writing to memory cannot fail");
            out
        }
    }
}
