//! Generated events in compact form, and their rendering into the JSON wire format.

use chrono::{DateTime, SecondsFormat};
use serde_json::{Map, Value, json};
use uuid::Builder;

use crate::catalogue::{ProductRef, catalogue, cents_to_eur, product_at};
use crate::people::Person;

/// A messaging channel of the shop's campaigns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MsgChannel {
    Email,
    Whatsapp,
    Sms,
    Push,
}

impl MsgChannel {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MsgChannel::Email => "email",
            MsgChannel::Whatsapp => "whatsapp",
            MsgChannel::Sms => "sms",
            MsgChannel::Push => "push",
        }
    }

    /// Index into [`Person::opt_in`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    fn utm_source(self) -> &'static str {
        match self {
            MsgChannel::Email => "newsletter",
            MsgChannel::Whatsapp => "whatsapp",
            MsgChannel::Sms => "sms",
            MsgChannel::Push => "app",
        }
    }
}

/// One send of a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Campaign {
    pub(crate) channel: MsgChannel,
    /// Send date as `yyyymmdd`.
    pub(crate) date: u32,
    /// The category the campaign features.
    pub(crate) featured: u8,
    /// The welcome e-mail sent to new sign-ups (coupon `WELCOME10`).
    pub(crate) welcome: bool,
}

impl Campaign {
    pub(crate) fn id(&self) -> String {
        if self.welcome { "cmp_welcome".to_owned() } else { format!("cmp_{}_{}", self.channel.as_str(), self.date) }
    }

    pub(crate) fn coupon(&self) -> &'static str {
        match (self.welcome, self.channel) {
            (true, _) => "WELCOME10",
            (false, MsgChannel::Email) => "NEWS10",
            (false, MsgChannel::Whatsapp) => "CHAT10",
            (false, MsgChannel::Sms) => "SMS10",
            (false, MsgChannel::Push) => "APP10",
        }
    }
}

/// A page of the shop that is not a product page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Page {
    Home,
    Category(u8),
    Cart,
    Signup,
}

impl Page {
    fn name(self) -> &'static str {
        match self {
            Page::Home => "home",
            Page::Category(_) => "category",
            Page::Cart => "cart",
            Page::Signup => "signup",
        }
    }

    pub(crate) fn path(self) -> String {
        match self {
            Page::Home => "/".to_owned(),
            Page::Category(c) => format!("/c/{}", catalogue()[usize::from(c)].id),
            Page::Cart => "/cart".to_owned(),
            Page::Signup => "/account/signup".to_owned(),
        }
    }
}

/// What happened, with the data its `props` are rendered from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    SessionStart { referrer: &'static str, landing: String },
    PageView(Page),
    ProductView(ProductRef),
    Search { query: &'static str, results: u32 },
    AddToCart(ProductRef, u32),
    RemoveFromCart(ProductRef, u32),
    CheckoutStart { cents: u64, units: u32 },
    Purchase { order: u64, lines: Vec<(ProductRef, u32)>, coupon: Option<&'static str>, cents: u64 },
    Signup { method: &'static str, source: &'static str },
    Login { method: &'static str },
    CampaignClick,
    EmailOpen,
}

/// One generated event, before rendering.
#[derive(Debug, Clone)]
pub(crate) struct Raw {
    /// Event time, ms since the epoch.
    pub(crate) ts: i64,
    /// Generation order: the tie-break of equal timestamps.
    pub(crate) seq: u64,
    pub(crate) person: u32,
    pub(crate) session: u64,
    /// Whether the event carries the person's `user_id`.
    pub(crate) identified: bool,
    pub(crate) campaign: Option<Campaign>,
    pub(crate) id: [u8; 16],
    pub(crate) kind: Kind,
}

fn line(p: ProductRef, qty: Option<u32>) -> Map<String, Value> {
    let product = product_at(p);
    let mut m = Map::new();
    m.insert("product_id".into(), product.id.clone().into());
    m.insert("category".into(), product.category.into());
    m.insert("price".into(), product.price().into());
    if let Some(q) = qty {
        m.insert("quantity".into(), q.into());
    }
    m
}

fn props(raw: &Raw) -> Value {
    match &raw.kind {
        Kind::SessionStart { referrer, landing } => json!({"referrer": referrer, "landing": landing}),
        Kind::PageView(page) => {
            let mut m = json!({"page": page.name(), "path": page.path()});
            if let Page::Category(c) = page {
                m["category"] = catalogue()[usize::from(*c)].id.into();
            }
            m
        }
        Kind::ProductView(p) => {
            let mut m = line(*p, None);
            m.insert("path".into(), format!("/p/{}", product_at(*p).id).into());
            m.into()
        }
        Kind::Search { query, results } => json!({"query": query, "results": results}),
        Kind::AddToCart(p, q) | Kind::RemoveFromCart(p, q) => line(*p, Some(*q)).into(),
        Kind::CheckoutStart { cents, units } => json!({"cart_value": cents_to_eur(*cents), "items": units}),
        Kind::Purchase { order, lines, coupon, cents } => {
            let items: Vec<Value> = lines.iter().map(|(p, q)| line(*p, Some(*q)).into()).collect();
            let mut m = json!({"order_id": format!("o_{order:08}"), "revenue": cents_to_eur(*cents),
                               "currency": "EUR", "items": items});
            if let Some(c) = coupon {
                m["coupon"] = (*c).into();
            }
            m
        }
        Kind::Signup { method, source } => json!({"method": method, "source": source}),
        Kind::Login { method } => json!({"method": method}),
        Kind::CampaignClick | Kind::EmailOpen => match raw.campaign {
            Some(c) => json!({"campaign_id": c.id(), "channel": c.channel.as_str()}),
            None => json!({}),
        },
    }
}

/// Renders an event in the wire format.
pub(crate) fn render(raw: &Raw, person: &Person, client_id: &str) -> Value {
    let ts = DateTime::from_timestamp_millis(raw.ts).unwrap_or_default();
    let mut context = Map::new();
    context.insert("ip".into(), person.ip.clone().into());
    context.insert("ua".into(), person.ua.into());
    context.insert("locale".into(), person.locale.into());
    context.insert("channel".into(), person.device.channel().into());
    if let (Some(c), false) = (raw.campaign, raw.kind == Kind::EmailOpen) {
        context.insert("utm_source".into(), c.channel.utm_source().into());
        context.insert("utm_medium".into(), c.channel.as_str().into());
        context.insert("utm_campaign".into(), c.id().into());
    }
    let mut event = Map::new();
    event.insert("event_id".into(), Builder::from_random_bytes(raw.id).into_uuid().to_string().into());
    event.insert("timestamp".into(), ts.to_rfc3339_opts(SecondsFormat::Millis, true).into());
    event.insert("client_id".into(), client_id.into());
    if raw.identified {
        event.insert("user_id".into(), person.user_id.clone().into());
    }
    event.insert("anon_id".into(), person.anon_id.clone().into());
    event.insert("session_id".into(), format!("s_{:016x}", raw.session).into());
    event.insert("event_type".into(), event_type(&raw.kind).into());
    event.insert("props".into(), props(raw));
    event.insert("context".into(), context.into());
    event.into()
}

fn event_type(kind: &Kind) -> &'static str {
    match kind {
        Kind::SessionStart { .. } => "session_start",
        Kind::PageView(_) => "page_view",
        Kind::ProductView(_) => "product_view",
        Kind::Search { .. } => "search",
        Kind::AddToCart(..) => "add_to_cart",
        Kind::RemoveFromCart(..) => "remove_from_cart",
        Kind::CheckoutStart { .. } => "checkout_start",
        Kind::Purchase { .. } => "purchase",
        Kind::Signup { .. } => "signup",
        Kind::Login { .. } => "login",
        Kind::CampaignClick => "campaign_click",
        Kind::EmailOpen => "email_open",
    }
}
