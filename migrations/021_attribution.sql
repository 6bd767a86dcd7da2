-- Attribution rules (docs/commissions.md §2): an order is attributed to its click only when
-- the merchant owns the host of the click's link, and the order was placed no earlier than
-- the click (less a small clock-skew tolerance) and within the attribution window after it.
-- An order failing a rule is kept, unattributed, with the reason; it is never retried.

-- The hosts a merchant's links point at, as patterns in app.core.hosts' normal form
-- ('shop.example.com', '*.example.com'). Empty: any host, as before this migration (set
-- them with `python -m app.cli set-merchant-hosts`).
ALTER TABLE merchants
    ADD COLUMN hosts text[] NOT NULL DEFAULT '{}'
        CONSTRAINT merchants_hosts_count CHECK (cardinality(hosts) <= 100);

-- The window and tolerance in force when the order was first reported, kept with it so a
-- retry (or a change of the settings) never judges it differently. The postback always
-- sets both; the defaults are the settings' defaults, for the orders stored before.
ALTER TABLE orders
    ADD COLUMN unattributed_reason text
        CONSTRAINT orders_unattributed_reason_known CHECK (unattributed_reason IN
            ('order_before_click', 'outside_attribution_window', 'click_not_for_this_merchant')),
    ADD COLUMN attribution_window interval NOT NULL DEFAULT interval '30 days',
    ADD COLUMN attribution_skew interval NOT NULL DEFAULT interval '5 minutes',
    ADD CONSTRAINT orders_unattributed_reason_only_unattributed
        CHECK (unattributed_reason IS NULL OR attribution <> 'attributed');

-- Orders that can still be attributed: those refused for a reason no longer wait.
DROP INDEX orders_waiting_for_click;
CREATE INDEX orders_waiting_for_click ON orders (id)
    WHERE attribution = 'unattributed' AND click_id IS NOT NULL AND unattributed_reason IS NULL;
