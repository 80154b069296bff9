//! A small sample recording generated at start (no download), served by the stack so the
//! printed curl lines work offline: one second of a 440 Hz tone, 8 kHz mono 16-bit PCM WAV.

/// The sample as WAV bytes.
pub fn sample_wav() -> Vec<u8> {
    const RATE: u32 = 8_000;
    let samples: Vec<i16> = (0..RATE)
        .map(|n| {
            let t = f64::from(n) / f64::from(RATE);
            // Truncation to i16 is the point: the amplitude stays well inside its range.
            #[allow(clippy::cast_possible_truncation)]
            let value = ((t * 440.0 * std::f64::consts::TAU).sin() * 8_000.0) as i16;
            value
        })
        .collect();
    let data_len = u32::try_from(samples.len() * 2).unwrap_or(u32::MAX);
    let mut wav = Vec::with_capacity(44 + samples.len() * 2);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&RATE.to_le_bytes());
    wav.extend_from_slice(&(RATE * 2).to_le_bytes()); // byte rate
    wav.extend_from_slice(&2u16.to_le_bytes()); // block align
    wav.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for sample in samples {
        wav.extend_from_slice(&sample.to_le_bytes());
    }
    wav
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_a_one_second_wav() {
        let wav = super::sample_wav();
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(&wav[8..12], b"WAVE");
        assert_eq!(wav.len(), 44 + 16_000);
    }
}
