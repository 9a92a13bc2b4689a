//! The config crate's unit tests: parsing, validation, live/restart changes.

use super::*;

#[test]
fn example_config_parses() {
    // Read at run time: a test binary built in another clone sharing the target dir
    // must still read this clone's file.
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let path = Path::new(&dir).join("../../cinder.example.toml");
    let c = Config::load(&path).unwrap();
    assert_eq!(c.models[0].id, "smollm2-135m-instruct");
    assert!(c.models[0].path.is_absolute());
    // The shipped file says what the built-in defaults are.
    assert_eq!(c.server.cors_origins, loopback_origins());
    assert_eq!(
        c.server,
        ServerConfig {
            port: c.server.port,
            ..ServerConfig::default()
        }
    );
}

#[test]
fn decode_activations_are_f32_unless_a_model_asks_for_q8() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let text = std::fs::read_to_string(Path::new(&dir).join("../../cinder.example.toml")).unwrap();
    let c: Config = toml::from_str(&text).unwrap();
    assert_eq!(c.models[0].decode_activations, Activations::F32);
    assert_eq!(c.models[0].activations, Activations::F32);
    let q8 = text.replace(
        "decode_activations = \"f32\"",
        "decode_activations = \"q8\"",
    );
    let c: Config = toml::from_str(&q8).unwrap();
    assert_eq!(c.models[0].decode_activations, Activations::Q8);
    let all = text.replace("activations = \"f32\"\n", "activations = \"q8\"\n");
    let c: Config = toml::from_str(&all).unwrap();
    assert_eq!(c.models[0].activations, Activations::Q8);
    let bad = text.replace(
        "decode_activations = \"f32\"",
        "decode_activations = \"q4\"",
    );
    let e = toml::from_str::<Config>(&bad).unwrap_err().to_string();
    assert!(e.contains("q4") && e.contains("decode_activations"), "{e}");
}

#[test]
fn limits_have_upper_bounds() {
    for bad in [
        "request_timeout_secs = 18446744073709551615",
        "idle_timeout_secs = 86401",
        "plugin_memory_mib = 5000",
        "max_concurrent_requests = 100000",
        "plugin_cpu_ms = 0",
        "max_running_sequences = 0",
        "max_running_sequences = 100000",
        "max_kv_mib = 0",
        "max_waiting_sequences = 0",
        "grammar.max_refs = 0",
        "grammar.max_refs = 20000",
        "grammar.max_depth = 5000",
    ] {
        let toml = match bad.strip_prefix("grammar.") {
            Some(g) => format!("[limits.grammar]\n{g}\n"),
            None => format!("[limits]\n{bad}\n"),
        };
        let c: Config = toml::from_str(&toml).unwrap();
        let err = c.validate().unwrap_err().to_string();
        let key = bad.split(' ').next().unwrap();
        assert!(err.contains(key), "{bad}: {err}");
    }
    let ok: Config =
        toml::from_str("[limits]\nrequest_timeout_secs = 86400\nmax_queued_requests = 0\n")
            .unwrap();
    assert!(ok.validate().is_ok());
}

#[test]
fn unknown_keys_are_errors() {
    let err = toml::from_str::<Config>("[server]\nprot = 1\n").unwrap_err();
    assert!(err.to_string().contains("prot"), "{err}");
}

#[test]
fn changes_are_split_into_live_and_restart() {
    let a: Config = toml::from_str("").unwrap();
    let b: Config =
        toml::from_str("[server]\nport = 9\napi_keys = ['k']\n[limits]\nplugin_cpu_ms = 5\n")
            .unwrap();
    let c = a.changes(&b);
    assert_eq!(c.live, ["server.api_keys", "limits.plugin_cpu_ms"]);
    assert_eq!(c.restart, ["server.port"]);
    assert!(a.changes(&a.clone()).is_empty());
    // Each engine takes its admission limits when its model loads.
    let d: Config = toml::from_str("[limits]\nmax_running_sequences = 2\n").unwrap();
    assert_eq!(a.changes(&d).restart, ["limits.max_running_sequences"]);
}

#[test]
fn plugin_settings_are_live_scalars() {
    let a: Config = toml::from_str("").unwrap();
    let b: Config =
        toml::from_str("[plugins.settings.summarize]\ninstruction = 'Be brief.'\nlimit = 3\n")
            .unwrap();
    assert_eq!(a.changes(&b).live, ["plugins.settings"]);
    let s = b.plugins.settings_as_strings();
    assert_eq!(
        s["summarize"],
        [
            ("instruction".to_string(), "Be brief.".to_string()),
            ("limit".to_string(), "3".to_string())
        ]
    );
    let bad: Config = toml::from_str("[plugins.settings.x]\nlist = [1]\n").unwrap();
    assert!(bad.validate().is_err());
}

#[test]
fn aliases_are_live_and_share_the_namespace_with_ids() {
    let a: Config = toml::from_str("[[models]]\nid='m'\npath='x'\n").unwrap();
    let b: Config =
        toml::from_str("[[models]]\nid='m'\npath='x'\naliases=['gpt-4o-mini']\n").unwrap();
    let c = a.changes(&b);
    assert_eq!((c.live, c.restart), (vec!["models.aliases"], vec![]));
    let moved: Config =
        toml::from_str("[[models]]\nid='m'\npath='y'\naliases=['gpt-4o-mini']\n").unwrap();
    assert_eq!(a.changes(&moved).restart, ["models"]);
    let clash: Config = toml::from_str(
        "[[models]]\nid='m'\npath='x'\n[[models]]\nid='n'\npath='y'\naliases=['m']\n",
    )
    .unwrap();
    assert!(clash.validate().is_err());
}

#[test]
fn apply_live_takes_exactly_the_live_keys() {
    let a: Config = toml::from_str("[[models]]\nid='m'\npath='x'\n").unwrap();
    let b: Config = toml::from_str(
        "[server]\nport = 9\napi_keys = ['k']\ncors_origins = []\nlog = 'debug'\nmax_body_bytes = 5\n\
         [plugins.settings.p]\nk = 1\n[plugins.network]\np = ['10.0.0.1']\n[limits]\nplugin_cpu_ms = 5\nrequest_timeout_secs = 6\n\
         idle_timeout_secs = 7\nmax_queued_requests = 8\nmax_concurrent_requests = 9\n\
         [[models]]\nid='m'\npath='x'\naliases=['g']\n",
    )
    .unwrap();
    let mut running = a.clone();
    running.apply_live(&b);
    let left = running.changes(&b);
    assert!(left.live.is_empty(), "{left:?}");
    assert_eq!(left.restart, a.changes(&b).restart);
}

#[test]
fn zero_limits_are_refused() {
    let c: Config = toml::from_str("[limits]\nidle_timeout_secs = 0\n").unwrap();
    assert!(c.validate().is_err());
}

#[test]
fn duplicate_ids_are_refused() {
    let c: Config =
        toml::from_str("[[models]]\nid='a'\npath='x'\n[[models]]\nid='a'\npath='y'\n").unwrap();
    assert!(c.validate().is_err());
}

#[test]
fn network_grants_parse_addresses_and_ranges() {
    let c: Config =
        toml::from_str("[plugins.network]\np = ['127.0.0.1', '10.0.0.0/8', '::1', 'fd00::/8']\n")
            .unwrap();
    c.validate().unwrap();
    let grants = c.plugins.network_grants().unwrap();
    assert_eq!(grants["p"].len(), 4);
    assert_eq!(grants["p"][0].to_string(), "127.0.0.1/32");
    let bad: Config = toml::from_str("[plugins.network]\np = ['localhost']\n").unwrap();
    let err = bad.validate().unwrap_err().to_string();
    assert!(
        err.contains("plugins.network.p") && err.contains("localhost"),
        "{err}"
    );
    let a: Config = toml::from_str("").unwrap();
    assert_eq!(a.changes(&c).live, ["plugins.network"]);
}

#[test]
fn storage_url_and_file_limit_are_checked() {
    let c: Config = toml::from_str(
        "[storage]\nurl = 'postgres://u@db/cinder'\n[limits]\nmax_file_bytes = 1024\n",
    )
    .unwrap();
    c.validate().unwrap();
    assert_eq!(c.limits.max_file_bytes, 1024);
    let empty: Config = toml::from_str("").unwrap();
    assert_eq!(empty.limits.max_file_bytes, 512 << 20);
    for bad in [
        "[storage]\nurl = 'mysql://u@db/cinder'\n",
        "[storage]\nurl = ''\n",
        "[limits]\nmax_file_bytes = 0\n",
    ] {
        let c: Config = toml::from_str(bad).unwrap();
        assert!(c.validate().is_err(), "{bad}");
    }
    // The database is chosen at start; the file limit applies to the next request.
    let a: Config = toml::from_str("").unwrap();
    let changes = a.changes(&c_with(
        "[storage]\nurl = 'postgres://x/y'\n[limits]\nmax_file_bytes = 9\n",
    ));
    assert_eq!(changes.restart, ["storage.url"]);
    assert_eq!(changes.live, ["limits.max_file_bytes"]);
}

fn c_with(text: &str) -> Config {
    toml::from_str(text).unwrap()
}

#[test]
fn an_image_models_table_is_checked_by_name() {
    let base = "[[models]]\nid = \"sd\"\npath = \"/x\"\n[models.image]\n";
    let ok: Config = toml::from_str(&format!(
        "{base}sizes = [\"512x512\", \"768x512\"]\nsteps = 25\nguidance = 5.0\nscheduler = \"dpmpp_2m\"\nmax_waiting = 2\n"
    ))
    .unwrap();
    ok.validate().unwrap();
    assert_eq!(
        ok.models[0].image.parsed_sizes().unwrap(),
        [(512, 512), (768, 512)]
    );
    assert_eq!(ok.models[0].image.scheduler.as_deref(), Some("dpmpp_2m"));
    for (bad, names) in [
        ("sizes = [\"512\"]", "sizes"),
        ("sizes = [\"0x512\"]", "sizes"),
        ("sizes = [\"512x99999\"]", "sizes"),
        ("scheduler = \"pndm\"", "scheduler"),
        ("guidance = 31.0", "guidance"),
        ("steps = 0", "steps"),
        ("max_waiting = 5000", "max_waiting"),
    ] {
        let c: Config = toml::from_str(&format!("{base}{bad}\n")).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains(&format!("image.{names}")) && e.contains("`sd`"),
            "{bad}: {e}"
        );
    }
    let e = toml::from_str::<Config>(&format!("{base}stepz = 3\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("stepz"), "{e}");
}

#[test]
fn adapters_name_a_model_and_take_a_name_of_their_own() {
    let model = "[[models]]\nid = \"m\"\npath = \"/x\"\naliases = [\"gpt\"]\n";
    let ok = c_with(&format!(
        "{model}[[adapters]]\nid = \"m-lora\"\nbase = \"m\"\npath = \"/a\"\n"
    ));
    ok.validate().unwrap();
    assert_eq!(ok.adapters[0].base, "m");
    for (adapter, why) in [
        (
            "id = \"x\"\nbase = \"nope\"\npath = \"/a\"",
            "not a [[models]] id",
        ),
        ("id = \"m\"\nbase = \"m\"\npath = \"/a\"", "names a model"),
        ("id = \"gpt\"\nbase = \"m\"\npath = \"/a\"", "names a model"),
    ] {
        let c = c_with(&format!("{model}[[adapters]]\n{adapter}\n"));
        let e = c.validate().expect_err(adapter).to_string();
        assert!(e.contains(why), "{adapter}: {e}");
    }
    assert!(
        toml::from_str::<Config>(&format!(
            "{model}[[adapters]]\nid = \"a\"\nbase = \"m\"\npath = \"/a\"\nrank = 8\n"
        ))
        .is_err()
    );
    // Adapters need a restart.
    let other = c_with(&format!(
        "{model}[[adapters]]\nid = \"m-lora\"\nbase = \"m\"\npath = \"/b\"\n"
    ));
    assert_eq!(ok.changes(&other).restart, ["adapters"]);
}
