//! The codecs SIP negotiates, as the media runtime and the log name them.

pub fn media_codec(codec: dialtone_sip::sdp::Codec) -> dialtone_media::codec::Codec {
    match codec {
        dialtone_sip::sdp::Codec::Pcmu => dialtone_media::codec::Codec::Pcmu,
        dialtone_sip::sdp::Codec::Pcma => dialtone_media::codec::Codec::Pcma,
    }
}

pub fn codec_name(codec: dialtone_sip::sdp::Codec) -> &'static str {
    match codec {
        dialtone_sip::sdp::Codec::Pcmu => "PCMU",
        dialtone_sip::sdp::Codec::Pcma => "PCMA",
    }
}
