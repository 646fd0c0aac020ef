//! The gradient checks' element choice (tests/common `checked_elements`): every index of every axis and every
//! corner is checked, whatever the shape, so an error confined to one row, column, channel or batch item (a wrong
//! padded edge, say) cannot slip between the checked elements.
mod common;
use common::checked_elements;

fn coords(mut j: usize, shape: &[usize]) -> Vec<usize> {
    let mut c = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        c[d] = j % shape[d];
        j /= shape[d];
    }
    c
}

#[test]
fn every_index_of_every_axis_and_every_corner_is_checked() {
    let shapes: [&[usize]; 9] = [
        &[2, 3, 8, 8],
        &[1, 3, 7, 9],
        &[2, 3, 7, 6],
        &[9, 2, 4, 4],
        &[4, 3, 3, 3],
        &[5],
        &[3, 1, 1],
        &[2, 5, 7],
        &[64, 3, 1, 17],
    ];
    for shape in shapes {
        for extra in [0, 10, 60] {
            let n: usize = shape.iter().product();
            let picked = checked_elements(shape, extra);
            assert!(picked.windows(2).all(|w| w[0] < w[1]), "{shape:?}: not sorted / repeated");
            assert!(picked.iter().all(|&j| j < n), "{shape:?}: index out of range");
            let cs: Vec<Vec<usize>> = picked.iter().map(|&j| coords(j, shape)).collect();
            for (d, &len) in shape.iter().enumerate() {
                for v in 0..len {
                    assert!(cs.iter().any(|c| c[d] == v), "{shape:?} extra {extra}: axis {d} index {v} never checked");
                }
            }
            for mask in 0..1usize << shape.len() {
                let corner: Vec<usize> =
                    shape.iter().enumerate().map(|(d, &l)| if mask >> d & 1 == 1 { l - 1 } else { 0 }).collect();
                assert!(cs.contains(&corner), "{shape:?}: corner {corner:?} not checked");
            }
            // The last column is seen at more than one row when there are several rows (a right-edge error that
            // only shows away from the corners is still caught).
            if shape.len() == 4 && shape[2] > 1 && shape[3] > 1 {
                let rows: std::collections::BTreeSet<usize> =
                    cs.iter().filter(|c| c[3] == shape[3] - 1).map(|c| c[2]).collect();
                assert!(rows.len() >= 2, "{shape:?}: last column only at rows {rows:?}");
            }
        }
    }
    // Asking for at least as many elements as there are checks them all.
    assert_eq!(checked_elements(&[2, 3, 5], 30), (0..30).collect::<Vec<_>>());
}
